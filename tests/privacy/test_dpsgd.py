import sys

import numpy as np
import pytest

from pollinate import (
    ArrayRecord,
    ClientApp,
    Context,
    FedAvg,
    MetricRecord,
    RecordDict,
    frameworks,
    run_simulation,
)
from pollinate.errors import ConfigError
from pollinate.privacy import DPSGD_STATE_KEY, NODE_DELTA_KEY, NODE_EPSILON_KEY, DpSgd

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

# Opacus's per-example hooks fire on the first layer, whose input needs no gradient.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

NUM_EXAMPLES, BATCH_SIZE = 64, 16  # 4 batches an epoch: sampling rate 1/4


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _loader(seed: int = 0) -> torch.utils.data.DataLoader:
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(NUM_EXAMPLES, 4)), dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 2, NUM_EXAMPLES))
    dataset = torch.utils.data.TensorDataset(x, y)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, generator=generator)


def _train_round(context: Context, epochs: int, **options) -> tuple[DpSgd, torch.nn.Module]:
    """One round on a node made anew: a fresh model, optimizer, loader and DpSgd."""
    model = _net()
    dp = DpSgd(context, max_grad_norm=1.0, delta=1e-5, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    private_model, optimizer, loader = dp.make_private(model, optimizer, _loader())
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(private_model(x), y).backward()
            optimizer.step()
    return dp, model


def _opacus_epsilon(noise: float, steps: int, delta: float = 1e-5) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise, BATCH_SIZE / NUM_EXAMPLES, steps)]
    return accountant.get_epsilon(delta=delta)


def test_node_epsilon_equals_opacus_and_dp_accounting_for_the_same_steps():
    context = Context(run_id=1, node_id=1)
    for _ in range(2):  # two rounds, each on a node made anew
        dp, _ = _train_round(context, epochs=3, noise_multiplier=1.1)
    steps = 2 * 3 * NUM_EXAMPLES // BATCH_SIZE
    assert dp.history == [(1.1, BATCH_SIZE / NUM_EXAMPLES, steps)]
    assert dp.epsilon == pytest.approx(_opacus_epsilon(1.1, steps), rel=1e-12)
    assert dp.metrics() == {NODE_EPSILON_KEY: dp.epsilon, NODE_DELTA_KEY: 1e-5}

    import dp_accounting

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            BATCH_SIZE / NUM_EXAMPLES, dp_accounting.GaussianDpEvent(1.1)
        ),
        steps,
    )
    reference = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
    assert dp.epsilon == pytest.approx(reference, rel=0.05)  # the two use different orders


def test_epsilon_grows_across_rounds_and_survives_nodes_made_anew_in_a_simulation():
    app = ClientApp()

    @app.train()
    def train(msg, context):
        model = _net()
        frameworks.torch.load_arrays(model, msg.content.arrays())
        dp = DpSgd(context, max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        private_model, optimizer, loader = dp.make_private(model, optimizer, _loader())
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(private_model(x), y).backward()
            optimizer.step()
        metrics = MetricRecord({"num-examples": NUM_EXAMPLES, **dp.metrics()})
        return msg.reply(
            RecordDict({"arrays": frameworks.torch.to_arrays(model), "metrics": metrics})
        )

    result = run_simulation(
        client_app=app,
        num_nodes=2,
        strategy=FedAvg(fraction_train=1.0, fraction_evaluate=0.0),
        num_rounds=3,
        initial_arrays=frameworks.torch.to_arrays(_net()),
        verbose=False,
    )
    rounds = result.metrics("train")
    epsilons = [rounds[r][NODE_EPSILON_KEY] for r in (1, 2, 3)]
    assert epsilons[0] < epsilons[1] < epsilons[2]
    steps_per_round = NUM_EXAMPLES // BATCH_SIZE
    for server_round, epsilon in enumerate(epsilons, start=1):
        assert epsilon == pytest.approx(_opacus_epsilon(1.0, server_round * steps_per_round))
    assert rounds[3][NODE_DELTA_KEY] == pytest.approx(1e-5)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_target_epsilon_calibration_lands_at_or_below_the_target(accountant):
    context = Context(run_id=1, node_id=1)
    options = {"target_epsilon": 3.0, "planned_epochs": 4, "accountant": accountant}
    for _ in range(2):  # the 4 planned epochs, in two rounds
        dp, _ = _train_round(context, epochs=2, **options)
    assert 2.9 <= dp.epsilon <= 3.0
    assert sum(steps for _, _, steps in dp.history) == 4 * NUM_EXAMPLES // BATCH_SIZE


def test_a_node_past_its_planned_steps_is_refused_before_the_update():
    context = Context(run_id=1, node_id=1)
    _train_round(context, epochs=2, target_epsilon=3.0, planned_epochs=3)
    with pytest.raises(ConfigError, match="has spent its privacy budget"):
        _train_round(context, epochs=2, target_epsilon=3.0, planned_epochs=3)  # 1 epoch left
    dp = DpSgd(context, max_grad_norm=1.0, delta=1e-5, target_epsilon=3.0, planned_epochs=3)
    assert sum(steps for _, _, steps in dp.history) == 3 * NUM_EXAMPLES // BATCH_SIZE
    assert dp.epsilon <= 3.0
    with pytest.raises(ConfigError, match="trains no more in this run"):
        _train_round(context, epochs=1, target_epsilon=3.0, planned_epochs=3)


def test_a_seed_makes_a_round_reproducible():
    models = [_train_round(Context(1, 1), epochs=1, noise_multiplier=1.0, seed=7)[1]]
    models.append(_train_round(Context(1, 1), epochs=1, noise_multiplier=1.0, seed=7)[1])
    models.append(_train_round(Context(1, 1), epochs=1, noise_multiplier=1.0, seed=8)[1])
    same, other = (frameworks.torch.to_arrays(m) for m in models[1:])
    assert frameworks.torch.to_arrays(models[0]) == same
    assert frameworks.torch.to_arrays(models[0]) != other


def test_unseeded_noise_is_seeded_from_the_os_not_torchs_global_generator():
    # _net() calls torch.manual_seed(0), as apps do: unseeded noise must not follow it.
    first, second = (
        frameworks.torch.to_arrays(_train_round(Context(1, 1), epochs=1, noise_multiplier=1.0)[1])
        for _ in range(2)
    )
    assert first != second


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_seeded_round_on_a_gpu_draws_its_noise_there():
    def round_on_gpu():
        context = Context(1, 1)
        model = _net().cuda()
        dp = DpSgd(context, max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-5, seed=3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        private_model, optimizer, loader = dp.make_private(model, optimizer, _loader())
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(private_model(x.cuda()), y.cuda()).backward()
            optimizer.step()
        return dp, frameworks.torch.to_arrays(model.cpu())

    (dp, first), (_, second) = round_on_gpu(), round_on_gpu()
    for name, array in first.items():  # the same noise (GPU sums may differ in the last bits)
        np.testing.assert_allclose(array.numpy(), second[name].numpy(), rtol=1e-5, atol=1e-6)
    assert dp.epsilon == pytest.approx(_opacus_epsilon(1.0, NUM_EXAMPLES // BATCH_SIZE))


def test_secure_mode_without_torchcsprng_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcsprng", None)
    dp = DpSgd(Context(1, 1), max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-5, secure_mode=True)
    model = _net()
    with pytest.raises(ConfigError, match="secure_mode needs torchcsprng") as caught:
        dp.make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), _loader())
    assert "does not support torch 2" in str(caught.value)
    assert "pip install" not in str(caught.value)


def test_a_batchnorm_model_is_one_clear_error_naming_the_fix():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    dp = DpSgd(Context(1, 1), max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"ModuleValidator\.fix\(model\)") as caught:
        dp.make_private(model, optimizer, _loader())
    assert "layer 1 (BatchNorm1d)" in str(caught.value)
    assert len(str(caught.value)) < 400  # the layers and the fix, not Opacus's paragraph

    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)
    optimizer = torch.optim.SGD(fixed.parameters(), lr=0.1)
    assert dp.make_private(fixed, optimizer, _loader())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give either noise_multiplier or target_epsilon"),
        ({"noise_multiplier": 1.0, "target_epsilon": 1.0}, "give either"),
        ({"noise_multiplier": 0.0}, "noise_multiplier must be a finite number > 0"),
        ({"target_epsilon": 1.0}, "target_epsilon needs planned_epochs"),
        ({"noise_multiplier": 1.0, "accountant": "gdp"}, "unknown accountant 'gdp'"),
        ({"noise_multiplier": 1.0, "delta": 1.0}, r"delta must be a number in \(0, 1\)"),
        ({"noise_multiplier": 1.0, "delta": "1e-5"}, r"delta must be a number in \(0, 1\)"),
        ({"noise_multiplier": 1.0, "max_grad_norm": -1}, "max_grad_norm must be"),
        ({"noise_multiplier": 1.0, "secure_mode": True, "seed": 1}, "give no seed"),
    ],
)
def test_settings_are_checked_with_one_clear_error(options, message):
    settings = {"max_grad_norm": 1.0, "delta": 1e-5, **options}
    with pytest.raises(ConfigError, match=message):
        DpSgd(Context(1, 1), **settings)


def test_a_target_too_small_to_reach_is_one_clear_error():
    dp = DpSgd(Context(1, 1), max_grad_norm=1.0, delta=1e-5, target_epsilon=1e-6, planned_epochs=1)
    model = _net()
    with pytest.raises(ConfigError, match="no noise multiplier keeps epsilon at 1e-06"):
        dp.make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), _loader())


def test_a_state_key_that_is_not_a_history_is_one_clear_error():
    context = Context(1, 1)
    context.state[DPSGD_STATE_KEY] = ArrayRecord({"w": np.zeros(2)})
    dp = DpSgd(context, max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-5)
    with pytest.raises(ConfigError, match="is not a DP-SGD history"):
        _ = dp.epsilon


def test_without_opacus_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)
    dp = DpSgd(Context(1, 1), max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-5)
    model = _net()
    with pytest.raises(ConfigError, match=r"pip install 'pollinate\[privacy\]'"):
        dp.make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), _loader())
