"""A Flower app's ``[tool.flwr.*]`` pyproject, read as pollinate's ``[tool.pollinate.*]``."""

import pytest

from pollinate.config import (
    load_app_config,
    parse_overrides,
    resolve_deployment,
    resolve_federation,
    resolve_run_config,
)
from pollinate.errors import ConfigError

FLOWER_APP = """
[project]
name = "quickstart-pytorch"

[tool.flwr.app]
publisher = "flwrlabs"

[tool.flwr.app.components]
serverapp = "pytorchexample.server_app:app"
clientapp = "pytorchexample.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 3
fraction-evaluate = 0.5
learning-rate = 0.1
"""

SEED_FEDERATIONS = """
[tool.flwr.federations]
default = "local-simulation"

[tool.flwr.federations.local-simulation]
options.num-supernodes = 10
"""

POLLINATE_TABLES = """
[tool.pollinate.app.components]
serverapp = "mine.server_app:app"
clientapp = "mine.client_app:app"

[tool.pollinate.federations.local-simulation]
num-nodes = 2
"""


@pytest.fixture
def app_dir(tmp_path):
    def write(text: str):
        (tmp_path / "pyproject.toml").write_text(text)
        return tmp_path

    return write


def test_flwr_new_tables_are_read_as_pollinates(app_dir):
    app = load_app_config(app_dir(FLOWER_APP + SEED_FEDERATIONS))
    assert app.name == "quickstart-pytorch"
    assert (app.serverapp, app.clientapp) == (
        "pytorchexample.server_app:app",
        "pytorchexample.client_app:app",
    )
    assert app.run_config == {
        "num-server-rounds": 3,
        "fraction-evaluate": 0.5,
        "learning-rate": 0.1,
    }
    federation = resolve_federation(app, None, [])
    assert (federation.name, federation.num_nodes, federation.backend) == (
        "local-simulation",
        10,
        "inline",
    )
    (note,) = app.notes  # one note: the pollinate spelling
    assert "[tool.pollinate.app.components]" in note
    assert "[tool.pollinate.federations.local-simulation] num-nodes = 10" in note


def test_overrides_apply_to_a_flower_app(app_dir):
    app = load_app_config(app_dir(FLOWER_APP + SEED_FEDERATIONS))
    config = resolve_run_config(app, parse_overrides(["num-server-rounds=1"], "--run-config"))
    assert config["num-server-rounds"] == 1
    federation = resolve_federation(app, None, parse_overrides(["num-nodes=3"], "x"))
    assert federation.num_nodes == 3


def test_without_federations_the_app_runs_on_flowers_default_of_10_nodes(app_dir):
    app = load_app_config(app_dir(FLOWER_APP))
    assert resolve_federation(app, None, []).num_nodes == 10
    spelling, default = app.notes
    assert "num-nodes = 10" in spelling
    assert "defines no federations" in default and "num-nodes=N" in default


def test_ray_options_are_accepted_and_named_once(app_dir):
    federations = """
[tool.flwr.federations]
default = "gpu-sim"

[tool.flwr.federations.gpu-sim]
options.num-supernodes = 4
options.backend.client-resources.num-cpus = 2
options.backend.client-resources.num-gpus = 0.25
"""
    app = load_app_config(app_dir(FLOWER_APP + federations))
    assert resolve_federation(app, None, []).num_nodes == 4
    ignored = app.notes[-1]
    assert "ignores" in ignored
    assert "options.backend.client-resources.num-gpus" in ignored


def test_a_superlink_federation_is_a_deployment(app_dir):
    federations = """
[tool.flwr.federations]
default = "local-poc"

[tool.flwr.federations.local-poc]
address = "127.0.0.1:9093"
insecure = true

[tool.flwr.federations.remote]
address = "link.example:9093"
root-certificates = "certs/ca.crt"
options.num-supernodes = 2

[tool.flwr.federations.my-sim]
options.num-supernodes = 2
"""
    app = load_app_config(app_dir(FLOWER_APP + federations))
    local = resolve_deployment(app, None)
    assert (local.address, local.insecure) == ("127.0.0.1:9093", True)
    remote = resolve_deployment(app, "remote")
    assert remote.root_cert == app.app_dir / "certs/ca.crt"
    assert resolve_federation(app, "my-sim", []).num_nodes == 2
    assert "[tool.flwr.federations.remote] options.num-supernodes" in app.notes[-1]


def test_pollinates_tables_win_and_the_note_says_so(app_dir):
    app = load_app_config(app_dir(FLOWER_APP + SEED_FEDERATIONS + POLLINATE_TABLES))
    assert app.serverapp == "mine.server_app:app"
    assert resolve_federation(app, None, []).num_nodes == 2
    (note,) = app.notes
    assert "pollinate's are used" in note


def test_a_pollinate_app_has_no_notes(app_dir):
    assert load_app_config(app_dir(POLLINATE_TABLES)).notes == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            FLOWER_APP + "[tool.flwr.federations.sim]\noptions.num-supernodes = 'ten'\n",
            "options.num-supernodes .* must be an integer",
        ),
        ("[tool.flwr]\napp = 3\n", r"\[tool.flwr.app\] must be a table"),
        ("[tool.flwr.app]\npublisher = 'x'\n", r"no \[tool.pollinate.app.components\]"),
    ],
)
def test_malformed_flower_tables_get_one_clear_error(app_dir, text, message):
    with pytest.raises(ConfigError, match=message):
        load_app_config(app_dir(text))


def test_a_hostile_depth_of_keys_is_read_without_exhausting_the_stack(tmp_path):
    deep = ".".join(["a"] * 3000)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.flwr.app.components]\nserverapp = "x:app"\nclientapp = "x:app"\n'
        f"[tool.flwr.federations.local-simulation]\n{deep} = 1\n"
    )
    app = load_app_config(tmp_path)
    (ignored,) = [note for note in app.notes if "ignores" in note]
    assert len(ignored) < 200 and "a.a.a" in ignored


@pytest.mark.parametrize("key", ["num-supernodes", "options.num-supernodes"])
def test_flowers_num_supernodes_on_the_command_line_names_num_nodes(app_dir, key):
    # A Flower user's reflex: flwr run . --federation-config "options.num-supernodes=5".
    app = load_app_config(app_dir(FLOWER_APP + SEED_FEDERATIONS))
    overrides = parse_overrides([f"{key}=5"], "--federation-config")
    with pytest.raises(ConfigError, match=r"Flower's name.*--federation-config num-nodes=5"):
        resolve_federation(app, None, overrides)
