import itertools

from pollinate import Message, RecordDict
from pollinate.server._grid import in_send_order


def test_replies_come_out_in_send_order_whatever_the_arrival_order():
    messages = [Message.create(RecordDict(), node, "train") for node in (1, 2, 3, 4)]
    ids = [m.metadata.message_id for m in messages]
    replies = [m.reply(RecordDict()) for m in messages]
    for arrival in itertools.permutations(replies):
        ordered = list(in_send_order(arrival, ids))
        assert [r.metadata.src_node_id for r in ordered] == [1, 2, 3, 4]


def test_replies_to_unknown_or_repeated_messages_are_dropped():
    messages = [Message.create(RecordDict(), node, "train") for node in (1, 2)]
    ids = [m.metadata.message_id for m in messages]
    stranger = Message.create(RecordDict(), 9, "train").reply(RecordDict())
    first = messages[0].reply(RecordDict())
    replies = [stranger, first, first, messages[1].reply(RecordDict())]
    assert [r.metadata.src_node_id for r in in_send_order(replies, ids)] == [1, 2]
