import numpy as np
import pytest

from pollinate import ArrayRecord, Context, Message, MetricRecord, RecordDict, frameworks
from pollinate.errors import ConfigError
from pollinate.message import MessageType
from pollinate.strategy._scaffold import Scaffold, ScaffoldClient

torch = pytest.importorskip("torch")


def _reply(msg, value, change):
    arrays = ArrayRecord(
        {k: np.full(a.shape, value, a.dtype) for k, a in msg.content.arrays().items()}
    )
    delta = ArrayRecord({k: np.full(a.shape, change) for k, a in msg.content.arrays().items()})
    metrics = MetricRecord({"num-examples": 10})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics, "scaffold.delta-c": delta}))


def test_server_steps_the_model_and_the_control_variate(make_grid, global_arrays):
    sampled, controls = [], []

    def train(msg, context):
        sampled.append(context.node_id)
        controls.append(float(msg.content.arrays("scaffold.c")["w"].numpy()[0, 0]))
        return _reply(msg, value=float(context.node_id), change=10.0 * context.node_id)

    # 2 of the 3 nodes train each round: |S| = 2, N = 3.
    strategy = Scaffold(server_learning_rate=0.5, fraction_train=0.5, fraction_evaluate=0.0)
    result = strategy.start(make_grid(train), global_arrays, num_rounds=2)
    first, second = sampled[:2], sampled[2:]
    c1 = 10.0 * sum(first) / 3  # c + |S|/N * mean(delta_c) = sum(delta_c) / N
    assert controls == pytest.approx([0.0, 0.0, c1, c1])
    control = result.strategy_state  # c is the strategy's state
    np.testing.assert_allclose(control["w"].numpy(), c1 + 10.0 * sum(second) / 3)
    assert control["w"].dtype == np.float64
    x1 = 0.5 * np.mean(first)  # x + lr * (mean(y) - x), unweighted
    np.testing.assert_allclose(result.arrays["w"].numpy(), x1 + 0.5 * (np.mean(second) - x1))
    assert result.arrays["w"].dtype == np.float32


def test_a_new_run_starts_from_a_zero_control_variate(make_grid, global_arrays):
    seen = []

    def train(msg, context):
        seen.append(float(msg.content.arrays("scaffold.c")["b"].numpy()[0]))
        return _reply(msg, value=1.0, change=3.0)

    strategy = Scaffold(fraction_evaluate=0.0)
    for _ in range(2):
        strategy.start(make_grid(train, num_nodes=2), global_arrays, num_rounds=1)
    assert seen == [0.0] * 4


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({}, "no ArrayRecord under 'scaffold.delta-c'"),
        ({"scaffold.delta-c": ArrayRecord({"w": np.zeros((2, 3))})}, "names ['w']"),
        (
            {"scaffold.delta-c": ArrayRecord({"w": np.zeros((3, 2)), "b": np.zeros(3)})},
            "has shape (3, 2)",
        ),
        (
            {"scaffold.delta-c": ArrayRecord({"w": np.zeros((2, 3)), "b": np.full(3, np.nan)})},
            "must hold finite floats",
        ),
    ],
)
def test_replies_without_a_good_control_change_are_set_aside(
    make_grid, global_arrays, good_reply, content, reason
):
    def train(msg, context):
        if context.node_id == 1:
            reply = good_reply(msg)
            return msg.reply(RecordDict({**reply.content, **content}))
        return _reply(msg, value=1.0, change=1.0)

    result = Scaffold(fraction_evaluate=0.0).start(make_grid(train), global_arrays, num_rounds=1)
    (failure,) = result.rounds[0].train.failures
    assert failure.node_id == 1 and reason in failure.reason


def test_bad_server_learning_rate_fails_at_construction():
    with pytest.raises(ConfigError, match="server_learning_rate must be a finite number > 0"):
        Scaffold(server_learning_rate=0.0)


def _message(arrays, control):
    content = RecordDict({"arrays": arrays, "scaffold.c": control})
    return Message.create(content, 1, MessageType.TRAIN)


def test_client_corrects_gradients_and_updates_its_control_variate():
    model = torch.nn.Linear(2, 1)
    x = frameworks.torch.to_arrays(model)
    c = ArrayRecord({"weight": np.array([[0.1, 0.2]]), "bias": np.array([0.3])})
    c_i = ArrayRecord({"weight": np.array([[0.05, -0.1]]), "bias": np.array([0.0])})
    context = Context(run_id=1, node_id=1, state=RecordDict({"scaffold.c-i": c_i}))
    scaffold = ScaffoldClient(_message(x, c), context, model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.ones(4, 2), torch.zeros(4, 1)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        raw = {name: p.grad.clone() for name, p in model.named_parameters()}
        scaffold.correct_gradients()
        for name, p in model.named_parameters():
            correction = torch.from_numpy(c[name].numpy() - c_i[name].numpy()).float()
            torch.testing.assert_close(p.grad, raw[name] + correction)
        optimizer.step()
    change = scaffold.finish(learning_rate=0.1)
    stored = context.state["scaffold.c-i"]
    for name, p in model.named_parameters():
        y = p.detach().double().numpy()
        expected = c_i[name].numpy() - c[name].numpy() + (x[name].numpy() - y) / (3 * 0.1)
        np.testing.assert_allclose(stored[name].numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(change[name].numpy(), expected - c_i[name].numpy())
        assert change[name].dtype == np.float64


def test_client_control_variate_starts_at_zero():
    model = torch.nn.Linear(2, 1)
    x = frameworks.torch.to_arrays(model)
    control = ArrayRecord({k: np.ones(a.shape) for k, a in x.items()})
    scaffold = ScaffoldClient(_message(x, control), Context(run_id=1, node_id=1), model)
    assert all(not a.numpy().any() for a in scaffold.local_control.values())


def test_client_needs_the_server_control_variate_and_some_steps():
    model = torch.nn.Linear(2, 1)
    x = frameworks.torch.to_arrays(model)
    message = Message.create(RecordDict({"arrays": x}), 1, MessageType.TRAIN)
    with pytest.raises(ConfigError, match="the server strategy must be Scaffold"):
        ScaffoldClient(message, Context(run_id=1, node_id=1), model)
    scaffold = ScaffoldClient(_message(x, x), Context(run_id=1, node_id=1), model)
    with pytest.raises(ConfigError, match="num_steps must be 1 or more, got 0"):
        scaffold.finish(learning_rate=0.1)


def _scaffold_train(msg, context):
    model = torch.nn.Linear(2, 1)
    frameworks.torch.load_arrays(model, msg.content.arrays())
    scaffold = ScaffoldClient(msg, context, model)
    generator = torch.Generator().manual_seed(context.node_id)
    inputs = torch.randn(16, 2, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [float(context.node_id)]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(4):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        scaffold.correct_gradients()
        optimizer.step()
    content = {
        "arrays": frameworks.torch.to_arrays(model),
        "metrics": MetricRecord({"num-examples": len(inputs)}),
        "scaffold.delta-c": scaffold.finish(learning_rate=0.05),
    }
    return msg.reply(RecordDict(content))


def test_three_rounds_end_to_end(make_grid):
    grid = make_grid(_scaffold_train)
    initial = ArrayRecord({"weight": np.zeros((1, 2), np.float32), "bias": np.zeros(1, np.float32)})
    strategy = Scaffold(fraction_evaluate=0.0)
    result = strategy.start(grid, initial, num_rounds=3)
    assert [r.train.num_ok for r in result.rounds] == [3, 3, 3]
    control = result.strategy_state
    assert np.abs(control["weight"].numpy()).sum() > 0
    # Every node trains every round, so c stays the mean of the nodes' c_i.
    for name in ("weight", "bias"):
        local = [grid.node_state(n)["scaffold.c-i"][name].numpy() for n in (1, 2, 3)]
        np.testing.assert_allclose(control[name].numpy(), np.mean(local, axis=0))


def test_strategies_with_their_own_rule_refuse_a_chain_instead_of_ignoring_it():
    from pollinate.strategy import FedXgbBagging, chain, median

    with pytest.raises(ConfigError, match="Scaffold aggregates in its own way"):
        Scaffold(aggregation=chain(median()))
    with pytest.raises(ConfigError, match="FedXgbBagging aggregates in its own way"):
        FedXgbBagging(aggregation=chain(median()))


def test_the_control_variate_is_the_state_and_starts_at_zero_in_float64():
    state = Scaffold().init_state(ArrayRecord({"w": np.ones(2, np.float32)}))
    assert list(state) == ["w"] and state["w"].dtype == np.float64
    np.testing.assert_array_equal(state["w"].numpy(), [0.0, 0.0])
