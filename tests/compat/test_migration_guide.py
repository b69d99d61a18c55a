"""docs/migrating-from-flower.md promises names; each one it lists must exist."""

import importlib
import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).parents[2] / "docs" / "migrating-from-flower.md"


def module_rows() -> list[tuple[str, list[str]]]:
    """The guide's module table: (compat module, the names it says the module holds)."""
    text = GUIDE.read_text()
    table = text.split("## The modules", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[1].startswith("`pollinate.compat"):
            continue
        module = cells[1].strip("`")
        names = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", cells[2])
        rows.append((module, [n for n in names if not n.startswith("_")]))
    return rows


def test_the_guide_lists_every_compat_module():
    assert len(module_rows()) == 13


@pytest.mark.parametrize(("module", "names"), module_rows(), ids=lambda value: str(value))
def test_each_name_the_guide_lists_exists(module, names):
    imported = importlib.import_module(module)
    arguments = {"client_fn", "server_fn", "mods", "lifespan", "to_client"}
    promised = [n for n in names if n not in arguments]
    missing = [n for n in promised if n not in dir(imported) and not _lazy(imported, n)]
    assert not missing, f"{module} lacks {missing}, which the migration guide promises"


def _lazy(module: object, name: str) -> bool:
    """A name loaded when first used, or a submodule (``strategy_utils``)."""
    try:
        getattr(module, name)
    except (AttributeError, ImportError):
        try:
            importlib.import_module(f"{module.__name__}.{name}")  # type: ignore[attr-defined]
        except ImportError:
            return False
    return True
