import pytest

from pollinate import ClientApp, Context, Message, MetricRecord, RecordDict
from pollinate.errors import AppError
from pollinate.message import ErrorCode


def ask(app, message_type="train"):
    message = Message.create(RecordDict(), 1, message_type)
    return message, app(message, Context(run_id=1, node_id=1))


def metric(reply, key="who"):
    return reply.content["metrics"][key]


def answer(who):
    def handler(msg, context):
        return msg.reply(RecordDict({"metrics": MetricRecord({"who": who})}))

    return handler


def test_dispatches_by_message_type_and_named_variant():
    app = ClientApp()
    app.train()(answer(1))
    app.train("finetune")(answer(2))
    app.evaluate()(answer(3))
    app.query()(answer(4))
    assert [metric(ask(app, t)[1]) for t in ("train", "train.finetune", "evaluate", "query")] == [
        1,
        2,
        3,
        4,
    ]
    assert app.message_types == ["evaluate", "query", "train", "train.finetune"]


def test_reply_answers_the_message():
    app = ClientApp()
    app.train()(answer(1))
    message, reply = ask(app)
    assert reply.metadata.reply_to_message_id == message.metadata.message_id


def test_missing_handler_is_an_error_reply_listing_handlers():
    app = ClientApp()
    app.train()(answer(1))
    _, reply = ask(app, "evaluate")
    assert reply.error.code == ErrorCode.NO_HANDLER
    assert "'evaluate'" in reply.error.reason and "train" in reply.error.reason


def test_exception_in_handler_becomes_an_error_reply():
    app = ClientApp()

    @app.train()
    def train(msg, context):
        raise ValueError("bad batch size")

    _, reply = ask(app)
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert "ValueError: bad batch size" in reply.error.reason
    assert "test_app.py" in reply.error.reason


def test_handler_returning_something_else_is_an_error_reply():
    app = ClientApp()
    app.train()(lambda msg, context: {"not": "a message"})
    _, reply = ask(app)
    assert "returned dict, expected a Message" in reply.error.reason


def test_duplicate_handler_is_refused():
    app = ClientApp()
    app.train()(answer(1))
    with pytest.raises(AppError, match="already has a handler for 'train'"):
        app.train()(answer(2))


def test_mods_wrap_handlers_outermost_first():
    calls = []

    def mod(tag):
        def wrapped(msg, context, call_next):
            calls.append(f"{tag}-in")
            reply = call_next(msg, context)
            calls.append(f"{tag}-out")
            return reply

        return wrapped

    app = ClientApp(mods=[mod("a"), mod("b")])

    @app.train()
    def train(msg, context):
        calls.append("handler")
        return msg.reply(RecordDict())

    ask(app)
    assert calls == ["a-in", "b-in", "handler", "b-out", "a-out"]


def test_mod_can_change_the_reply():
    def add_metric(msg, context, call_next):
        reply = call_next(msg, context)
        reply.content["metrics"]["extra"] = 1
        return reply

    app = ClientApp(mods=[add_metric])
    app.train()(answer(1))
    assert metric(ask(app)[1], "extra") == 1


def test_lifespan_sets_up_and_tears_down_even_when_the_handler_fails():
    events = []
    app = ClientApp()

    @app.lifespan()
    def lifespan(context):
        events.append(("setup", context.node_id))
        yield
        events.append(("teardown", context.node_id))

    @app.train()
    def train(msg, context):
        events.append(("handler", context.node_id))
        raise RuntimeError("boom")

    _, reply = ask(app)
    assert reply.has_error
    assert events == [("setup", 1), ("handler", 1), ("teardown", 1)]
