"""Client-side clipping and local DP, as mods of a real ClientApp, and with the server's noise."""

import numpy as np
import pytest
from dp_accounting import get_sigma_gaussian

from pollinate import (
    ArrayRecord,
    ClientApp,
    ConfigRecord,
    Context,
    FedAvg,
    MetricRecord,
    RecordDict,
)
from pollinate.errors import ConfigError, RoundError
from pollinate.message import Message
from pollinate.privacy import dp_fixed_clip, fixed_clipping_mod, local_dp_mod
from pollinate.simulation import run_simulation
from pollinate.strategy import Update, chain, norm_bound

from ._apps import pulling_app, run

MODEL = ArrayRecord({"w": np.ones(4, np.float32), "n": np.array([3], np.int64)})


def _app(mods, move):
    """A node that adds ``move`` to every weight and 1 to the counter."""
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg, context):
        arrays = msg.content.arrays()
        new = {"w": arrays["w"].numpy() + np.float32(move), "n": arrays["n"].numpy() + 1}
        metrics = MetricRecord({"num-examples": 10})
        return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))

    @app.evaluate()
    def evaluate(msg, context):
        return msg.reply(RecordDict({"metrics": MetricRecord({"num-examples": 10})}))

    return app


def _ask(app, config, kind="train", model=MODEL, node_id=1):
    content = RecordDict({"arrays": model, "config": ConfigRecord({"server-round": 2, **config})})
    message = Message.create(content, node_id, kind, run_id=1)
    return app(message, Context(1, node_id))


def _delta(reply, model=MODEL):
    return reply.content.arrays()["w"].numpy().astype(np.float64) - model["w"].numpy()


def test_the_clipping_mod_clips_the_delta_to_the_servers_clip_norm():
    reply = _ask(_app([fixed_clipping_mod], move=3.0), {"dp.clip-norm": 1.5})
    assert np.linalg.norm(_delta(reply)) == pytest.approx(1.5, rel=1e-6)
    np.testing.assert_allclose(_delta(reply), np.full(4, 0.75), rtol=1e-6)  # direction kept
    assert reply.content.arrays()["n"].numpy().tolist() == [4]  # counters left as sent


def test_an_update_within_the_clip_leaves_the_mod_unchanged():
    reply = _ask(_app([fixed_clipping_mod], move=0.1), {"dp.clip-norm": 1.0})
    np.testing.assert_allclose(_delta(reply), np.full(4, 0.1), rtol=1e-6)


def test_the_clipping_mod_lets_evaluation_through_and_fails_a_train_message_without_a_clip():
    app = _app([fixed_clipping_mod], move=3.0)
    assert not _ask(app, {}, kind="evaluate").has_error
    reply = _ask(app, {})
    assert reply.has_error and "dp_fixed_clip(..., clipped_on='nodes')" in reply.error.reason


def test_nodes_that_clip_and_a_server_that_adds_noise_run_together(make_grid):
    grid = make_grid(pulling_app(mods=[fixed_clipping_mod]), num_nodes=10)
    piece = dp_fixed_clip(0.5, 1.0, clipped_on="nodes", seed=0)
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, aggregation=chain(piece))
    result = run(strategy, grid, 2)
    assert all(not r.train.failures and r.train.num_ok > 0 for r in result.rounds)
    assert result.rounds[-1].train.metrics["privacy.clip-norm"] == 0.5


def test_a_node_without_the_mod_is_set_aside_naming_the_mod(make_grid):
    grid = make_grid(pulling_app(), num_nodes=10)
    piece = dp_fixed_clip(0.5, 1.0, clipped_on="nodes", seed=0)
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, aggregation=chain(piece))
    with pytest.raises(RoundError, match="add fixed_clipping_mod to the ClientApp's mods"):
        run(strategy, grid, 1)


def test_local_dp_noise_is_the_gaussian_mechanisms_for_the_nodes_epsilon():
    model = ArrayRecord({"w": np.zeros(200_000)})
    app = _local_app(local_dp_mod(clip_norm=0.5, epsilon=2.0, delta=1e-5, seed=1))
    reply = _ask(app, {}, model=model)
    std = get_sigma_gaussian(2.0, 1e-5) * 2 * 0.5  # sensitivity: two clipped deltas' distance
    assert reply.content.arrays()["w"].numpy().std() == pytest.approx(std, rel=0.02)
    metrics = reply.content.metrics()
    assert metrics["privacy.node-epsilon"] == 2.0 and metrics["privacy.node-delta"] == 1e-5
    assert metrics["num-examples"] == 10


def test_local_dp_node_epsilon_composes_the_rounds_the_node_trained_in():
    from dp_accounting import get_epsilon_gaussian

    app = _local_app(local_dp_mod(clip_norm=0.5, epsilon=2.0, delta=1e-5, seed=1))
    context, z = Context(1, 1), get_sigma_gaussian(2.0, 1e-5)
    spent = []
    for server_round in (1, 2, 3):
        content = RecordDict(
            {"arrays": MODEL, "config": ConfigRecord({"server-round": server_round})}
        )
        reply = app(Message.create(content, 1, "train", run_id=1), context)
        spent.append(reply.content.metrics()["privacy.node-epsilon"])
    # Three Gaussian mechanisms of multiplier z compose exactly to one of z / sqrt(3).
    assert spent[0] == 2.0
    assert spent[2] == pytest.approx(get_epsilon_gaussian(z / np.sqrt(3), 1e-5), rel=1e-9)
    assert spent[0] < spent[1] < spent[2] < 3 * 2.0


def test_local_dp_clips_before_the_noise_and_repeats_with_a_seed():
    model = ArrayRecord({"w": np.zeros(4)})
    mod = local_dp_mod(clip_norm=1.0, epsilon=1e6, delta=0.5, seed=3)  # next to no noise
    reply = _ask(_local_app(mod, move=10.0), {}, model=model)
    assert np.linalg.norm(reply.content.arrays()["w"].numpy()) == pytest.approx(1.0, rel=1e-3)
    noisy = local_dp_mod(clip_norm=1.0, epsilon=1.0, delta=1e-5, seed=3)
    first = _ask(_local_app(noisy), {}, model=model).content.arrays()["w"].numpy()
    again = _ask(_local_app(noisy), {}, model=model).content.arrays()["w"].numpy()
    assert first.tobytes() == again.tobytes()


def _local_app(mod, move=0.0):
    app = ClientApp(mods=[mod])

    @app.train()
    def train(msg, context):
        new = {k: a.numpy() + move for k, a in msg.content.arrays().items()}
        metrics = MetricRecord({"num-examples": 10})
        return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))

    return app


def test_local_dp_refuses_a_complex_array_it_cannot_noise():
    model = ArrayRecord({"z": np.zeros(2, np.complex128)})
    reply = _ask(_local_app(local_dp_mod(1.0, 1.0, 1e-5)), {}, model=model)
    assert reply.has_error and "real and imaginary parts" in reply.error.reason


def test_local_dp_mods_bad_delta_names_the_mod():
    with pytest.raises(ConfigError, match=r"^local_dp_mod: delta must be between 0 and 1"):
        local_dp_mod(1.0, 1.0, 0.0)


def test_local_dp_sends_integer_arrays_back_as_received():
    # An integer layer cannot be noised; sent as trained it would leak (BatchNorm's
    # num_batches_tracked counts the node's batches, so its data set's size).
    reply = _ask(_app([local_dp_mod(1.0, 1.0, 1e-5, seed=0)], move=0.5), {})
    assert reply.content.arrays()["n"].numpy().tolist() == [3]  # the node made it 4


@pytest.mark.parametrize(
    ("dtype", "size", "clip"),
    [(np.float16, 10_000, 0.05), (np.float32, 1_000_000, 1e-3), (np.float64, 1000, 1e-6)],
)
def test_an_honestly_clipped_node_is_kept_whatever_its_dtype_rounds(dtype, size, clip):
    rng = np.random.default_rng(0)
    current = ArrayRecord({"w": rng.uniform(0.5, 2.0, size).astype(dtype)})
    trained = current["w"].numpy() + rng.normal(0, 1, size).astype(dtype)
    app = ClientApp(mods=[fixed_clipping_mod])

    @app.train()
    def train(msg, context):
        arrays = ArrayRecord({"w": trained.astype(dtype)})
        metrics = MetricRecord({"num-examples": 1})
        return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))

    sent = _ask(app, {"dp.clip-norm": clip}, model=current).content.arrays()
    aggregation = chain(dp_fixed_clip(clip, 1.0, clipped_on="nodes", seed=0))
    assert aggregation.check_update(sent, MetricRecord({"num-examples": 1}), current) is None


def test_an_update_past_the_clip_by_more_than_rounding_is_set_aside():
    current = ArrayRecord({"w": np.ones(1000, np.float16)})
    longer = ArrayRecord({"w": (current["w"].numpy() + np.float16(0.0035)).astype(np.float16)})
    aggregation = chain(dp_fixed_clip(0.1, 1.0, clipped_on="nodes", seed=0))  # norm ~0.11
    reason = aggregation.check_update(longer, MetricRecord({"num-examples": 1}), current)
    assert reason is not None and "must clip to dp.clip-norm=0.1" in reason


def test_node_clipping_and_norm_bound_clip_a_complex_delta_alike():
    current = ArrayRecord({"z": np.array([1 + 1j, 2 - 1j], np.complex128)})
    trained = ArrayRecord({"z": np.array([4 + 5j, 2 - 1j], np.complex128)})  # delta norm 5
    app = ClientApp(mods=[fixed_clipping_mod])

    @app.train()
    def train(msg, context):
        return msg.reply(
            RecordDict({"arrays": trained, "metrics": MetricRecord({"num-examples": 1})})
        )

    sent = _ask(app, {"dp.clip-norm": 1.0}, model=current).content.arrays()
    filtered = norm_bound(1.0).filter_one(Update(1, trained, 1.0, MetricRecord()), current)
    np.testing.assert_allclose(sent["z"].numpy(), filtered.arrays["z"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(sent["z"].numpy() - current["z"].numpy(), [0.6 + 0.8j, 0])


LOCAL_DP_APP = ClientApp(mods=[local_dp_mod(clip_norm=1.0, epsilon=8.0, delta=1e-5, seed=3)])
"""At module level, with its handler, so the process backend can pickle it."""


@LOCAL_DP_APP.train()
def _add_a_tenth(msg: Message, context: Context) -> Message:
    arrays = ArrayRecord({k: v.numpy() + 0.1 for k, v in msg.content.arrays().items()})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 1})}))


def test_a_client_app_with_local_dp_runs_on_worker_processes_as_inline():
    def final(backend):
        result = run_simulation(
            client_app=LOCAL_DP_APP,
            num_nodes=3,
            strategy=FedAvg(fraction_evaluate=0.0),
            num_rounds=1,
            initial_arrays=ArrayRecord({"w": np.zeros(4, np.float32)}),
            backend=backend,
            verbose=False,
        )
        return result.arrays["w"].numpy()

    np.testing.assert_array_equal(final("process"), final("inline"))
