import pytest

from pollinate import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from pollinate.errors import RecordError
from pollinate.message import ErrorCode, Metadata


def make(message_type="train"):
    return Message.create(RecordDict({"config": ConfigRecord({"lr": 0.1})}), 7, message_type)


def test_create_fills_metadata():
    message = make()
    md = message.metadata
    assert (md.src_node_id, md.dst_node_id, md.message_type) == (0, 7, "train")
    assert md.message_id and md.created_at > 0 and md.reply_to_message_id == ""


def test_reply_points_back_at_the_message():
    message = make().with_metadata(run_id=5, group_id="round-1")
    reply = message.reply(RecordDict())
    md = reply.metadata
    assert md.reply_to_message_id == message.metadata.message_id
    assert (md.src_node_id, md.dst_node_id) == (7, 0)
    assert (md.run_id, md.group_id, md.message_type) == (5, "round-1", "train")
    assert md.message_id != message.metadata.message_id
    assert 0 < md.ttl_s <= message.metadata.ttl_s


def test_error_reply_carries_code_and_reason():
    reply = make().reply_error(ErrorCode.TIMEOUT, "too slow")
    assert reply.has_error and not reply.has_content
    assert reply.error is not None and reply.error.code == ErrorCode.TIMEOUT
    assert reply.error.reason == "too slow"


def test_message_holds_content_or_error_not_both():
    md = Metadata(run_id=1, message_id="m", src_node_id=0, dst_node_id=1, message_type="train")
    with pytest.raises(RecordError, match="not both"):
        Message(md, RecordDict({"c": ConfigRecord({"a": 1})}), Error(1, "x"))


def test_error_message_has_empty_content():
    reply = make().reply_error(ErrorCode.TIMEOUT, "late")
    assert reply.content == RecordDict() and reply.has_error


def test_typed_getters_return_records_or_name_what_is_there():
    content = RecordDict({"arrays": ArrayRecord(), "metrics": MetricRecord({"a": 1})})
    assert content.arrays() == ArrayRecord() and content.metrics()["a"] == 1
    with pytest.raises(RecordError, match=r"expected a ConfigRecord under 'config', found nothing"):
        content.config()
    with pytest.raises(
        RecordError, match=r"expected an ArrayRecord under 'metrics', found a MetricRecord"
    ):
        content.arrays("metrics")


def test_content_must_be_a_record_dict():
    md = Metadata(run_id=1, message_id="m", src_node_id=0, dst_node_id=1, message_type="train")
    with pytest.raises(RecordError, match="RecordDict"):
        Message(md, content={"arrays": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["train", "evaluate", "query", "train.finetune"])
def test_known_message_types_are_accepted(good):
    assert make(good).metadata.message_type == good


def test_unknown_message_type_is_refused():
    with pytest.raises(RecordError, match="must start with one of"):
        make("fit")
