import numpy as np
import pytest

from pollinate import ArrayRecord, FedAvg, MetricRecord, RecordDict, frameworks
from pollinate.errors import ConfigError
from pollinate.strategy._fedprox import FedProx, proximal_term

torch = pytest.importorskip("torch")


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_train_config_carries_proximal_mu(make_grid, global_arrays, good_reply):
    seen = []

    def train(msg, context):
        seen.append(dict(msg.content["config"]))
        return good_reply(msg)

    FedProx(proximal_mu=0.5, fraction_evaluate=0.0).start(
        make_grid(train, num_nodes=2), global_arrays, num_rounds=1, train_config={"lr": 0.1}
    )
    assert seen == [{"lr": 0.1, "server-round": 1, "proximal-mu": 0.5}] * 2


def test_proximal_term_is_half_mu_times_the_squared_distance():
    model, anchor = _model(0), _model(1)
    global_params = [p.detach().clone() for p in anchor.parameters()]
    term = proximal_term(model, global_params, mu=0.3)
    expected = 0.15 * sum(
        float(((w.detach() - g) ** 2).sum())
        for w, g in zip(model.parameters(), global_params, strict=True)
    )
    assert float(term.detach()) == pytest.approx(expected, rel=1e-6)


def test_proximal_term_gradient_is_mu_times_the_difference():
    model, anchor = _model(0), _model(1)
    global_params = [p.detach().clone().requires_grad_(True) for p in anchor.parameters()]
    proximal_term(model, global_params, mu=0.3).backward()
    for w, g in zip(model.parameters(), global_params, strict=True):
        torch.testing.assert_close(w.grad, 0.3 * (w.detach() - g.detach()))
        assert g.grad is None  # the global parameters are held fixed


def test_proximal_term_matches_a_record_by_name_and_skips_buffers():
    model, anchor = _model(0), _model(1)
    record = frameworks.torch.to_arrays(anchor)
    assert "1.running_mean" in record  # a buffer, not a parameter
    listed = [p.detach() for p in anchor.parameters()]
    by_name = proximal_term(model, record, 2.0).detach()
    torch.testing.assert_close(by_name, proximal_term(model, listed, 2.0).detach())


def test_proximal_term_rejects_a_mismatched_global_model():
    with pytest.raises(ConfigError, match="global_params has 1 tensors, the model has 4"):
        proximal_term(_model(), [torch.zeros(2)], 0.1)
    with pytest.raises(ConfigError, match="has shape"):
        proximal_term(torch.nn.Linear(2, 1), [torch.zeros(1, 3), torch.zeros(1)], 0.1)
    with pytest.raises(ConfigError, match="mu must be a finite number >= 0, got -1"):
        proximal_term(_model(), [], -1.0)


@pytest.mark.parametrize("mu", [-0.1, float("nan"), float("inf")])
def test_bad_proximal_mu_fails_at_construction(mu):
    with pytest.raises(ConfigError, match="proximal_mu must be a finite number >= 0"):
        FedProx(proximal_mu=mu)


def _proximal_train(msg, context):
    """A few SGD steps of linear regression with the proximal term the server asks for."""
    config = msg.content.config()
    mu = config.value("proximal-mu", float) if "proximal-mu" in config else 0.0
    model = torch.nn.Linear(2, 1)
    frameworks.torch.load_arrays(model, msg.content.arrays())
    global_params = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(context.node_id)
    x = torch.randn(16, 2, generator=generator)
    y = x @ torch.tensor([[1.0], [float(context.node_id)]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        (loss + proximal_term(model, global_params, mu)).backward()
        optimizer.step()
    arrays = frameworks.torch.to_arrays(model)
    return msg.reply(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 16})}))


def _linear_arrays():
    return ArrayRecord({"weight": np.zeros((1, 2), np.float32), "bias": np.zeros(1, np.float32)})


def test_mu_zero_is_fedavg_exactly(make_grid):
    options = {"fraction_evaluate": 0.0}
    prox = FedProx(proximal_mu=0.0, **options).start(
        make_grid(_proximal_train), _linear_arrays(), num_rounds=2
    )
    plain = FedAvg(**options).start(make_grid(_proximal_train), _linear_arrays(), num_rounds=2)
    assert prox.arrays == plain.arrays


def test_a_positive_mu_keeps_nodes_closer_to_the_global_model(make_grid):
    def distance(mu):
        result = FedProx(proximal_mu=mu, fraction_evaluate=0.0).start(
            make_grid(_proximal_train), _linear_arrays(), num_rounds=1
        )
        return float(np.abs(result.arrays["weight"].numpy()).sum())

    assert distance(10.0) < distance(0.0)
