import pytest

from pollinate.config import (
    Federation,
    is_deployment,
    load_app_config,
    parse_overrides,
    resolve_deployment,
    resolve_federation,
    resolve_run_config,
)
from pollinate.errors import ConfigError

COMPONENTS = """
[tool.pollinate.app.components]
serverapp = "pkg.server_app:app"
clientapp = "pkg.client_app:app"
"""

CONFIG = """
[tool.pollinate.app.config]
num-server-rounds = 3
learning-rate = 0.1
use-bias = true
data-dir = "/data"
[tool.pollinate.app.config.optimizer]
momentum = 0.9
"""

FEDERATIONS = """
[tool.pollinate.federations]
default = "small"

[tool.pollinate.federations.small]
num-nodes = 4

[tool.pollinate.federations.pool]
num-nodes = 20
backend = "process"
num-workers = 2
client-resources = { num-cpus = 2, num-gpus = 0.0 }
"""


@pytest.fixture
def app_dir(tmp_path):
    def write(text: str = COMPONENTS + CONFIG + FEDERATIONS):
        (tmp_path / "pyproject.toml").write_text(text)
        return tmp_path

    return write


def _federation(app_dir, name=None, overrides=()):
    app = load_app_config(app_dir)
    return resolve_federation(app, name, parse_overrides(overrides, "--federation-config"))


def test_reads_components_run_config_and_federations(app_dir):
    app = load_app_config(app_dir())
    assert (app.serverapp, app.clientapp) == ("pkg.server_app:app", "pkg.client_app:app")
    assert app.run_config == {
        "num-server-rounds": 3,
        "learning-rate": 0.1,
        "use-bias": True,
        "data-dir": "/data",
        "optimizer.momentum": 0.9,
    }
    assert sorted(app.federations) == ["pool", "small"]
    assert app.default_federation == "small"


def test_run_config_overrides_are_typed_like_their_defaults(app_dir):
    app = load_app_config(app_dir())
    overrides = parse_overrides(
        ["num-server-rounds=5 learning-rate=1 use-bias=false", "optimizer.momentum=0.5"],
        "--run-config",
    )
    config = resolve_run_config(app, overrides)
    assert config["num-server-rounds"] == 5
    assert config["learning-rate"] == 1.0 and isinstance(config["learning-rate"], float)
    assert config["use-bias"] is False
    assert config["optimizer.momentum"] == 0.5
    assert app.run_config["num-server-rounds"] == 3  # the defaults stay as they were


def test_unknown_run_config_key_lists_the_known_ones(app_dir):
    app = load_app_config(app_dir())
    with pytest.raises(ConfigError) as err:
        resolve_run_config(app, parse_overrides(["learning-rat=0.2"], "--run-config"))
    message = str(err.value)
    assert "unknown key 'learning-rat' (did you mean 'learning-rate'?)" in message
    assert "known keys: data-dir, learning-rate, num-server-rounds" in message
    assert "[tool.pollinate.app.config]" in message


def test_wrong_type_names_key_expected_type_and_default(app_dir):
    app = load_app_config(app_dir())
    with pytest.raises(ConfigError) as err:
        resolve_run_config(app, parse_overrides(["num-server-rounds=many"], "--run-config"))
    assert str(err.value) == (
        "--run-config: 'num-server-rounds' (default 3) must be an int, got 'many'"
    )


def test_federation_defaults_to_the_apps_default(app_dir):
    assert _federation(app_dir()) == Federation("small", num_nodes=4)


def test_federation_defaults_to_local_simulation_without_a_default(app_dir):
    text = COMPONENTS + "[tool.pollinate.federations.local-simulation]\nnum-nodes = 2\n"
    assert _federation(app_dir(text)).name == "local-simulation"


def test_process_federation_maps_to_backend_options(app_dir):
    federation = _federation(app_dir(), "pool")
    assert federation == Federation("pool", 20, "process", num_workers=2, num_cpus=2)
    assert federation.backend_options() == {"num_workers": 2, "threads_per_worker": 2}
    assert federation.to_json()["client-resources"] == {"num-cpus": 2, "num-gpus": 0.0}


def test_federation_overrides_use_dotted_keys(app_dir):
    federation = _federation(
        app_dir(),
        overrides=["num-nodes=10 backend=process client-resources.num-cpus=3 num-workers=4"],
    )
    assert federation == Federation("small", 10, "process", num_workers=4, num_cpus=3)


def test_vectorized_federation_passes_its_memory_budget(app_dir):
    overrides = ["backend=vectorized memory-budget-mb=256"]
    federation = _federation(app_dir(), overrides=overrides)
    assert federation == Federation("small", 4, "vectorized", memory_budget_mb=256.0)
    assert federation.backend_options() == {"memory_budget_mb": 256.0}
    assert federation.to_json()["memory-budget-mb"] == 256.0
    assert "256 MB memory budget" in federation.describe()
    default = _federation(app_dir(), overrides=["backend=vectorized"])
    assert default.backend_options() == {}


def test_ray_federation_maps_to_backend_options(app_dir):
    federation = _federation(
        app_dir(),
        overrides=["backend=ray ray-address=auto num-workers=3 client-resources.num-cpus=2"],
    )
    assert federation.backend_options() == {
        "ray_address": "auto",
        "num_actors": 3,
        "num_cpus": 2,
        "num_gpus": 0.0,
    }
    assert federation.to_json()["ray-address"] == "auto"
    assert federation.describe() == "4 nodes, ray backend, 3 workers, 2 CPUs per node, Ray at auto"


def test_ray_federation_defaults_leave_the_backend_its_own(app_dir):
    federation = _federation(app_dir(), overrides=["backend=ray"])
    assert federation.backend_options() == {"num_gpus": 0.0}
    assert "ray-address" not in federation.to_json()


def test_inline_backend_takes_no_options(app_dir):
    assert _federation(app_dir()).backend_options() == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["num-node=3"], "--federation-config: unknown key 'num-node' (did you mean 'num-nodes'?)"),
        (["num-nodes=ten"], "--federation-config: 'num-nodes' must be an int, got 'ten'"),
        (["num-nodes=0"], "num-nodes must be at least 1, got 0"),
        (
            ["backend=nosuch"],
            "backend must be one of 'inline', 'process', 'ray', 'vectorized', got",
        ),
        (["num-workers=2"], 'num-workers applies to backend = "process" (workers) or "ray"'),
        (["ray-address=auto"], 'ray-address applies to backend = "ray" only'),
        (["backend=process ray-address=auto"], 'ray-address applies to backend = "ray" only'),
        (["backend=process num-workers=0"], "num-workers must be at least 1"),
        (["memory-budget-mb=512"], 'memory-budget-mb applies to backend = "vectorized" only'),
        (["backend=vectorized memory-budget-mb=0.5"], "memory-budget-mb must be a number of MB"),
        (["backend=vectorized memory-budget-mb=inf"], "at least 1, got inf"),
        (["backend=vectorized memory-budget-mb=lots"], "'memory-budget-mb' must be a float"),
        (["client-resources.num-cpus=0"], "client-resources.num-cpus must be at least 1"),
        (["client-resources.num-gpus=-1"], "client-resources.num-gpus must be 0 or more"),
        (["client-resources.num-gpus=1.5"], "num-gpus = 1.5: above 1 a node holds whole GPUs"),
        (["client-resources.num-gpus=nan"], "client-resources.num-gpus must be 0 or more"),
    ],
)
def test_bad_federation_settings_are_clear_errors(app_dir, overrides, message):
    with pytest.raises(ConfigError) as err:
        _federation(app_dir(), overrides=overrides)
    assert message in str(err.value)


def test_zero_gpus_are_accepted(app_dir):
    federation = _federation(app_dir(), overrides=["client-resources.num-gpus=0"])
    assert federation.num_gpus == 0.0
    assert "GPU" not in federation.describe()


def test_a_gpu_share_reaches_every_backend_and_the_description(app_dir):
    federation = _federation(app_dir(), overrides=["client-resources.num-gpus=0.25"])
    assert federation.backend_options() == {"num_gpus": 0.25}
    assert federation.describe() == "4 nodes, inline backend, 0.25 GPU per node"
    assert federation.to_json()["client-resources"] == {"num-cpus": None, "num-gpus": 0.25}
    pool = _federation(app_dir(), "pool", overrides=["client-resources.num-gpus=2"])
    assert pool.backend_options() == {"num_gpus": 2.0, "num_workers": 2, "threads_per_worker": 2}
    assert pool.describe().endswith("2 CPUs per node, 2 GPUs per node")


def test_unknown_federation_lists_the_defined_ones(app_dir):
    with pytest.raises(ConfigError, match=r"unknown federation 'big'; .* defines: pool, small"):
        _federation(app_dir(), "big")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("num-nodes = 2\nnodes = 3", "unknown key 'nodes'"),
        ("num-nodes = 2\nclient-resources = { cpus = 1 }", "unknown key 'client-resources.cpus'"),
        ('num-nodes = "2"', 'num-nodes in .* must be an int, got "2"'),
        ("backend = 'inline'", "has no num-nodes"),
        (
            'address = "127.0.0.1:9093"',
            r"is a deployment \(it has an address\), and this command runs simulations only",
        ),
    ],
)
def test_bad_federation_tables_are_clear_errors(app_dir, table, message):
    text = COMPONENTS + f"[tool.pollinate.federations.local-simulation]\n{table}\n"
    with pytest.raises(ConfigError, match=message):
        _federation(app_dir(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[project]\nname = 'x'\n", r"has no \[tool.pollinate.app.components\] table"),
        (
            '[tool.pollinate.app.components]\nserverapp = "p.s:app"\n',
            r"has no 'clientapp': set it to the ClientApp's import string",
        ),
        (
            "[tool.pollinate.app.components]\nserverapp = 1\nclientapp = 'p.c:app'\n",
            "serverapp in .* must be a string",
        ),
        ("[tool.pollinate.app]\ncomponents = 3\n", r"\[tool.pollinate.app.components\] must be"),
        ("[tool.pollinate.app.components\n", "is not valid TOML"),
        (COMPONENTS + "[tool.pollinate.app.config]\nlayers = [1, 2]\n", "must be a bool, int"),
        (COMPONENTS + "[tool.pollinate.federations]\ndefault = 3\n", "must be a federation's"),
    ],
)
def test_bad_pyproject_is_a_clear_error(app_dir, text, message):
    with pytest.raises(ConfigError, match=message):
        load_app_config(app_dir(text))


def test_missing_pyproject_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"no pyproject.toml in .*pollinate new NAME"):
        load_app_config(tmp_path)


def test_missing_app_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"app directory .* does not exist"):
        load_app_config(tmp_path / "nowhere")


def test_app_dir_that_is_a_file(app_dir):
    with pytest.raises(ConfigError, match="is a file: give the app's folder"):
        load_app_config(app_dir() / "pyproject.toml")


DEPLOYMENT = """
[tool.pollinate.federations.prod]
address = "link.example:9400"
root-cert = "certs/ca.pem"
key = "certs/operator.key"
cert = "certs/operator.pem"
min-nodes = 3
"""


def test_a_federation_with_an_address_is_a_deployment_with_paths_from_the_app(app_dir):
    app = load_app_config(app_dir(COMPONENTS + FEDERATIONS + DEPLOYMENT))
    assert is_deployment(app, "prod") and not is_deployment(app, None)
    prod = resolve_deployment(app, "prod", parse_overrides(["wait-s=60"], "--federation-config"))
    assert (prod.address, prod.min_nodes, prod.wait_s) == ("link.example:9400", 3, 60.0)
    assert prod.root_cert == app.app_dir / "certs/ca.pem" and not prod.insecure
    assert prod.key == app.app_dir / "certs/operator.key"
    assert prod.cert == app.app_dir / "certs/operator.pem"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('address = "h:1"', r"needs root-cert = \"certs/ca.pem\" .* or insecure = true"),
        ('address = "h:1"\ninsecure = true\nroot-cert = "ca.pem"', "or insecure = true"),
        ('address = "h:1"\ninsecure = true\nnum-nodes = 3', "unknown key 'num-nodes'"),
        ('address = "h:1"\ninsecure = true\nmin-nodes = 0', "min-nodes must be at least 1"),
        ("address = 9400\ninsecure = true", "address .* must be a string"),
        ('address = "h:1"\nroot-cert = "ca.pem"\ncert = "op.pem"', "cert goes with key = "),
        ('address = "h:1"\ninsecure = true\ncert = "a"\nkey = "b"', "and root-cert"),
    ],
)
def test_bad_deployment_tables_are_clear_errors(app_dir, table, message):
    app = load_app_config(app_dir(COMPONENTS + f"[tool.pollinate.federations.prod]\n{table}\n"))
    with pytest.raises(ConfigError, match=message):
        resolve_deployment(app, "prod")


def test_asking_a_simulation_federation_for_its_link_names_the_deployed_ones(app_dir):
    app = load_app_config(app_dir(COMPONENTS + FEDERATIONS + DEPLOYMENT))
    with pytest.raises(ConfigError, match=r"'small' is a simulation.*--federation \(prod\)"):
        resolve_deployment(app, None)


POPULATION = """
[tool.pollinate.federations.devices]
num-nodes = 100

[tool.pollinate.federations.devices.population]
dropout = 0.1
seed = 7
speed = { kind = "lognormal", sigma = 1.5 }
"""


def test_a_population_table_is_kept_whole_for_the_population_model(app_dir):
    federation = _federation(app_dir(COMPONENTS + FEDERATIONS + POPULATION), "devices")
    population = {"dropout": 0.1, "seed": 7, "speed": {"kind": "lognormal", "sigma": 1.5}}
    assert federation.population == population
    assert federation.to_json()["population"] == population
    assert federation.describe() == "100 nodes, inline backend, a simulated population"
    assert _federation(app_dir(COMPONENTS + FEDERATIONS)).population is None
    assert "population" not in _federation(app_dir(COMPONENTS + FEDERATIONS)).to_json()


def test_a_population_that_is_not_a_table_is_a_clear_error(app_dir):
    text = COMPONENTS + "[tool.pollinate.federations.local-simulation]\nnum-nodes = 2\n"
    with pytest.raises(ConfigError, match=r"population in .* must be a table \(\[tool"):
        _federation(app_dir(text + "population = 3\n"))


def test_a_deployment_has_no_population(app_dir):
    text = COMPONENTS + '[tool.pollinate.federations.p]\naddress = "h:1"\ninsecure = true\n'
    text += "[tool.pollinate.federations.p.population]\nseed = 1\n"
    app = load_app_config(app_dir(text))
    with pytest.raises(ConfigError, match=r"unknown key 'population\.seed'"):
        resolve_deployment(app, "p", [])
