import pytest

from pollinate import ClientApp
from pollinate.errors import AppError
from pollinate.loader import load_object


@pytest.fixture
def app_dir(tmp_path):
    pkg = tmp_path / "loaderfixture"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("from pollinate import ClientApp\napp = ClientApp()\nother = 3\n")
    (pkg / "broken.py").write_text("import not_a_real_package_xyz\n")
    (pkg / "prefixed.py").write_text("import loaderfix\n")  # a prefix of the app's own name
    (pkg / "raises.py").write_text("raise RuntimeError('boom')\n")
    return tmp_path


def test_loads_an_object_by_import_string(app_dir):
    assert isinstance(load_object("loaderfixture.good:app", ClientApp, app_dir), ClientApp)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("loaderfixture.good", "must look like 'package.module:attribute'"),
        ("loaderfixture.missing:app", "cannot find module 'loaderfixture.missing'"),
        ("loaderfixture.good:nope", "has no attribute 'nope'"),
        ("loaderfixture.good:other", "is a int, expected a ClientApp"),
        ("loaderfixture.broken:app", "pip install not_a_real_package_xyz"),
        ("loaderfixture.prefixed:app", "pip install loaderfix"),
        ("loaderfixture.raises:app", "raised RuntimeError: boom"),
    ],
)
def test_bad_references_get_one_clear_error(app_dir, spec, message):
    with pytest.raises(AppError, match=message):
        load_object(spec, ClientApp, app_dir)


def test_a_fresh_load_forgets_another_copy_of_the_same_package(tmp_path):
    for version in ("one", "two"):
        package = tmp_path / version / "versioned_pkg"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "mod.py").write_text(f"VALUE = {version!r}\n")
    first = load_object("versioned_pkg.mod:VALUE", str, tmp_path / "one", fresh=True)
    second = load_object("versioned_pkg.mod:VALUE", str, tmp_path / "two", fresh=True)
    assert (first, second) == ("one", "two")
    assert load_object("versioned_pkg.mod:VALUE", str, tmp_path / "one", fresh=True) == "one"


def test_a_fresh_load_forgets_the_helper_modules_of_the_app_loaded_before(tmp_path):
    for version in ("one", "two"):
        app = tmp_path / version
        (app / "entry_pkg").mkdir(parents=True)
        (app / "entry_pkg" / "__init__.py").write_text("")
        (app / "entry_pkg" / "mod.py").write_text("import helper_mod\nVALUE = helper_mod.NAME\n")
        (app / "helper_mod.py").write_text(f"NAME = {version!r}\n")
    assert load_object("entry_pkg.mod:VALUE", str, tmp_path / "one", fresh=True) == "one"
    assert load_object("entry_pkg.mod:VALUE", str, tmp_path / "two", fresh=True) == "two"
