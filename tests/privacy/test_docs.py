"""docs/privacy.md's snippets run as written: a user copies them whole."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("number", range(len(SNIPPETS)))
def test_each_python_snippet_of_the_privacy_guide_runs(number):
    exec(compile(SNIPPETS[number], f"docs/privacy.md snippet {number}", "exec"), {})
