"""Flower's ClientApp, ServerApp and Grid on pollinate's, on the inline and process backends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pollinate
from pollinate.compat.flwr.app import (
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from pollinate.compat.flwr.clientapp import ClientApp
from pollinate.compat.flwr.serverapp import Grid, ServerApp
from pollinate.errors import AppError, ConfigError, RoundError

from . import _numpy_app

HERE = Path(__file__).parent
STEP = (1 * 10 + 2 * 20 + 3 * 30) / 60


def test_the_apps_are_pollinate_apps():
    assert isinstance(_numpy_app.app, pollinate.ClientApp)
    assert isinstance(_numpy_app.server, pollinate.ServerApp)
    assert _numpy_app.app.message_types == ["evaluate", "query.count", "train"]


@pytest.mark.parametrize("client_app", ["_numpy_app:app", _numpy_app.app])
@pytest.mark.parametrize("backend", ["inline", "process"])
def test_a_flower_style_app_runs_on_every_backend(backend, client_app):
    result = pollinate.run_simulation(
        _numpy_app.server,
        client_app,
        num_nodes=3,
        app_dir=HERE,
        backend=backend,
        backend_options={"num_workers": 2} if backend == "process" else None,
        run_config={"num-server-rounds": 2},
    )
    np.testing.assert_allclose(result.arrays["0"].numpy(), np.full((2, 3), 2 * STEP))
    assert [r.train.num_ok for r in result.rounds] == [3, 3]
    assert result.rounds[-1].train.metrics["calls"] == 2  # the node state travelled too
    assert result.rounds[-1].evaluate.metrics["loss"] == pytest.approx(2 * STEP)


def _driver(messages: list[Message], replies: list[Message]) -> ServerApp:
    """A ServerApp that sends ``messages`` through Flower's Grid and keeps the replies."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        assert grid.get_node_ids() == [1, 2]
        replies.extend(grid.send_and_receive(messages, timeout=60))

    return app


def _send(client_app: ClientApp, *messages: Message) -> list[Message]:
    replies: list[Message] = []
    result = pollinate.run_simulation(_driver(list(messages), replies), client_app, num_nodes=2)
    assert result.rounds == []  # a hand-written loop, as Flower allows: no rounds recorded
    return replies


def test_grid_send_and_receive_and_named_query_handlers():
    content = RecordDict({"arrays": _numpy_app.initial_arrays(), "config": ConfigRecord()})
    train = Message(content, 1, "train")
    query = Message(RecordDict(), 1, "query.count")
    replies = _send(_numpy_app.app, train, query)
    assert [r.metadata.message_type for r in replies] == ["train", "query.count"]
    assert all(isinstance(r, Message) and r.has_content() for r in replies)
    assert replies[1].content["metrics"]["n"] == 1  # the train call was counted in the state


def test_push_and_pull_messages():
    app = ServerApp()
    replies: list[Message] = []

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        message = grid.create_message(RecordDict(), "query.count", 2, group_id="1")
        ids = grid.push_messages([message])
        replies.extend(grid.pull_messages(ids))
        assert grid.run_id == context.run_id

    pollinate.run_simulation(app, _numpy_app.app, num_nodes=2)
    assert replies[0].content["metrics"]["n"] == 0


broken = ClientApp()


@broken.train()
def _returns_nothing(msg: Message, context: Context) -> None:
    return None


@broken.evaluate()
def _raises(msg: Message, context: Context) -> Message:
    raise ValueError("no data here")


@broken.query()
def _error_reply(msg: Message, context: Context) -> Message:
    return Message(Error(code=7, reason="refused"), reply_to=msg)


def test_handler_mistakes_become_error_replies_that_name_the_fix():
    replies = _send(
        broken,
        Message(RecordDict(), 1, "train"),
        Message(RecordDict(), 1, "evaluate"),
        Message(RecordDict(), 2, "query"),
    )
    assert all(r.has_error() for r in replies)
    assert "build replies with Message(content, reply_to=msg)" in replies[0].error.reason
    assert "ValueError: no data here" in replies[1].error.reason
    assert replies[2].error == Error(7, "refused")


events: list[str] = []


def app_mod(msg: Message, context: Context, call_next) -> Message:
    events.append(f"app-mod {type(msg).__name__} {type(context).__name__}")
    reply = call_next(msg, context)
    events.append(f"app-mod got {type(reply).__name__}")
    return reply


def handler_mod(msg: Message, context: Context, call_next) -> Message:
    events.append("handler-mod")
    return call_next(msg, context)


modded = ClientApp(mods=[app_mod])


@modded.lifespan()
def _lifespan(context: Context) -> Iterator[None]:
    events.append(f"enter {type(context).__name__}")
    yield
    events.append("exit")


@modded.train("special", mods=[handler_mod])
def _special(msg: Message, context: Context) -> Message:
    events.append("handler")
    return Message(RecordDict({"metrics": MetricRecord({"ok": 1})}), reply_to=msg)


def test_mods_and_lifespan_see_flower_types():
    events.clear()
    (reply,) = _send(modded, Message(RecordDict(), 1, "train.special"))
    assert reply.content["metrics"]["ok"] == 1
    assert events == [
        "enter Context",
        "app-mod Message Context",
        "handler-mod",
        "handler",
        "app-mod got Message",
        "exit",
    ]


def test_server_lifespan_wraps_the_run():
    app = ServerApp()
    seen: list[str] = []

    @app.lifespan()
    def lifespan(context: Context) -> Iterator[None]:
        seen.append("enter")
        yield
        seen.append("exit")

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        seen.append("main")

    pollinate.run_simulation(app, _numpy_app.app, num_nodes=1)
    assert seen == ["enter", "main", "exit"]


def test_server_app_forms_pollinate_lacks_are_clear_errors():
    with pytest.raises(ConfigError, match=r"server=.*not supported"):
        ServerApp(server=object())
    with pytest.raises(ConfigError, match="either server_fn"):
        ServerApp(server_fn=lambda context: None, strategy=object())
    app = ServerApp(server_fn=lambda context: None)
    with pytest.raises(AppError, match="server_fn"):
        app.main()


def test_server_fn_runs_a_classic_strategy():
    """Flower 1.x's server_fn form, on the classic API's strategy."""
    from pollinate.compat.flwr import common, server

    initial = common.ndarrays_to_parameters(_numpy_app.initial_arrays().to_numpy_ndarrays())

    def server_fn(context: Context):
        strategy = server.strategy.FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=3,
            min_available_clients=3,
            initial_parameters=initial,
        )
        return server.ServerAppComponents(
            strategy=strategy, config=server.ServerConfig(num_rounds=2)
        )

    result = pollinate.run_simulation(ServerApp(server_fn=server_fn), _numpy_app.app, num_nodes=3)
    np.testing.assert_allclose(result.arrays["0"].numpy(), np.full((2, 3), 2 * STEP))


def test_client_fn_form_runs_a_classic_client():
    """Flower 1.x's ``ClientApp(client_fn=...)``: a NumPyClient made for each message."""
    from pollinate.compat.flwr.app import ArrayRecord
    from pollinate.compat.flwr.client import NumPyClient
    from pollinate.compat.flwr.serverapp.strategy import FedAvg

    class Client(NumPyClient):
        def fit(self, parameters, config):
            parameters[0] += self.context.node_config["partition-id"]  # writable, as in Flower
            return parameters, 1, {}

    client_app = ClientApp(client_fn=lambda context: Client().to_client())
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        start = ArrayRecord([np.zeros(2)])
        result = FedAvg(fraction_evaluate=0.0).start(grid=grid, initial_arrays=start, num_rounds=1)
        np.testing.assert_array_equal(result.arrays["0"].numpy(), [1.0, 1.0])  # mean of 0, 1, 2

    pollinate.run_simulation(server_app, client_app, num_nodes=3, verbose=False)


def test_a_round_without_enough_valid_replies_stops_the_run():
    from pollinate.compat.flwr.serverapp.strategy import FedAvg

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        FedAvg().start(grid=grid, initial_arrays=_numpy_app.initial_arrays(), num_rounds=1)

    with pytest.raises(RoundError, match="valid replies"):
        pollinate.run_simulation(app, broken, num_nodes=2)


def _native_fedavg() -> pollinate.FedAvg:
    return pollinate.FedAvg(
        fraction_evaluate=0.0, min_train_nodes=3, initial_arrays=_numpy_app.initial_arrays()
    )


def test_server_fn_components_may_hold_a_native_strategy():
    from pollinate.compat.flwr.server import ServerAppComponents, ServerConfig

    def server_fn(context: Context) -> ServerAppComponents:
        assert isinstance(context, Context)
        return ServerAppComponents(config=ServerConfig(num_rounds=2), strategy=_native_fedavg())

    result = pollinate.run_simulation(ServerApp(server_fn=server_fn), _numpy_app.app, num_nodes=3)
    np.testing.assert_allclose(result.arrays["0"].numpy(), np.full((2, 3), 2 * STEP))


def test_config_and_strategy_given_directly_are_a_server_fn():
    from pollinate.compat.flwr.server import ServerConfig

    app = ServerApp(config=ServerConfig(num_rounds=1), strategy=_native_fedavg())
    result = pollinate.run_simulation(app, _numpy_app.app, num_nodes=3)
    np.testing.assert_allclose(result.arrays["0"].numpy(), np.full((2, 3), STEP))


@pytest.mark.parametrize(
    ("components", "message"),
    [
        ({}, "must return ServerAppComponents"),
        ({"server": object()}, "server=..., client_manager=...) is not supported"),
        ({"strategy": object()}, "strategy must be a strategy"),
    ],
)
def test_server_fn_mistakes_are_clear_errors(components, message):
    from pollinate.compat.flwr.server import ServerAppComponents

    made = ServerAppComponents(**components) if components else "components"
    app = ServerApp(server_fn=lambda context: made)
    with pytest.raises(ConfigError, match=re.escape(message)):
        pollinate.run_simulation(app, _numpy_app.app, num_nodes=3)


def test_client_fn_form_runs_under_the_apps_mods():
    """``ClientApp(client_fn=..., mods=[...])``: a classic client, with Flower mods around it."""
    from pollinate.compat.flwr.client import NumPyClient

    class AddOne(NumPyClient):
        def fit(self, parameters, config):
            return [p + 1 for p in parameters], 1, {}

    events.clear()
    app = ClientApp(client_fn=lambda context: AddOne().to_client(), mods=[app_mod])
    result = pollinate.run_simulation(
        _numpy_app.server, app, num_nodes=2, run_config={"fraction-evaluate": 0.0}
    )
    np.testing.assert_allclose(result.arrays["0"].numpy(), np.full((2, 3), 2.0))
    assert "app-mod Message Context" in events and "app-mod got Message" in events


def test_a_hand_written_loop_is_told_that_pollinate_records_no_rounds(caplog):
    # Flower's advanced-pytorch and federated-analytics drive grid.send_and_receive
    # themselves: the run works, and the summary's "0 rounds, empty model" is explained.
    caplog.set_level("WARNING", logger="pollinate")
    query = Message(RecordDict(), 1, "query.count")
    (reply,) = _send(_numpy_app.app, query)
    assert reply.has_content()
    (record,) = [r for r in caplog.records if "send_and_receive" in r.getMessage()]
    assert "no rounds" in record.getMessage()
