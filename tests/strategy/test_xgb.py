import json
import subprocess
import sys

import numpy as np
import pytest

from pollinate import ArrayRecord, Message, MetricRecord, RecordDict
from pollinate.errors import ConfigError
from pollinate.message import MessageType
from pollinate.strategy._xgb import FedXgbBagging, xgb_booster, xgb_new_trees, xgb_record


@pytest.fixture
def xgb():
    return pytest.importorskip("xgboost")


def _fake_model(num_trees=1, num_feature="3", booster="gbtree"):
    """The parts of an XGBoost model JSON that bagging reads and writes."""
    model = {
        "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(num_trees)},
        "iteration_indptr": list(range(num_trees + 1)),
        "tree_info": [0] * num_trees,
        "trees": [{"id": i, "leaf": 10 * num_trees + i} for i in range(num_trees)],
    }
    learner = {
        "attributes": {"best_iteration": "0"},
        "gradient_booster": {"name": booster, "model": model},
        "learner_model_param": {"num_feature": num_feature, "num_class": "0", "num_target": "1"},
        "objective": {"name": "reg:squarederror"},
    }
    return {"learner": learner, "version": [2, 1, 4]}


def _record(model):
    return xgb_record(json.dumps(model).encode())


def _reply(record, node_id=1):
    sent = Message.create(RecordDict({"arrays": xgb_record()}), node_id, MessageType.TRAIN)
    metrics = MetricRecord({"num-examples": 10})
    return sent.reply(RecordDict({"arrays": record, "metrics": metrics}))


def _aggregate(strategy, global_record, records):
    replies = [_reply(r, i) for i, r in enumerate(records, 1)]
    kept = (r for r in replies if strategy.check_train_reply(r, global_record) is None)
    arrays, _, state = strategy.aggregate_train(1, global_record, kept, ArrayRecord())
    assert not state  # bagging keeps nothing between rounds
    return arrays


def test_trees_are_appended_with_new_ids_iterations_and_tree_info():
    merged = _aggregate(
        FedXgbBagging(), _record(_fake_model(2)), [_record(_fake_model(1)), _record(_fake_model(3))]
    )
    model = json.loads(merged["model"].numpy().tobytes())
    gbtree = model["learner"]["gradient_booster"]["model"]
    assert [t["id"] for t in gbtree["trees"]] == list(range(6))
    assert [t["leaf"] for t in gbtree["trees"]] == [20, 21, 10, 30, 31, 32]
    assert gbtree["iteration_indptr"] == [0, 1, 2, 3, 4, 5, 6]
    assert gbtree["tree_info"] == [0] * 6
    assert gbtree["gbtree_model_param"]["num_trees"] == "6"
    assert "best_iteration" not in model["learner"]["attributes"]


def test_the_first_round_starts_from_the_first_reply():
    merged = _aggregate(FedXgbBagging(), xgb_record(), [_record(_fake_model(2))] * 2)
    gbtree = json.loads(merged["model"].numpy().tobytes())["learner"]["gradient_booster"]
    assert gbtree["model"]["gbtree_model_param"]["num_trees"] == "4"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (xgb_record(b"\x00\x01"), "not XGBoost JSON"),
        (xgb_record(), "reply model is empty"),
        (ArrayRecord({"model": np.zeros(3, np.float32)}), "must be a 1-d uint8 array"),
        (ArrayRecord({"weights": np.zeros(3, np.uint8)}), "one array named 'model'"),
        (xgb_record(b'{"learner": {}}'), "not an XGBoost >= 2.0 gbtree model JSON"),
        (_record(_fake_model(booster="dart")), "only gbtree boosters can be bagged"),
        (_record(_fake_model(num_feature="4")), "reply model (num_feature=4, num_class=0"),
    ],
)
def test_unusable_replies_are_set_aside(record, reason):
    strategy = FedXgbBagging()
    global_record = _record(_fake_model(1))
    assert strategy.check_train_reply(_reply(_record(_fake_model(1))), global_record) is None
    assert reason in strategy.check_train_reply(_reply(record), global_record)


def test_inconsistent_tree_counts_are_set_aside():
    model = _fake_model(2)
    model["learner"]["gradient_booster"]["model"]["tree_info"] = [0]
    reason = FedXgbBagging().check_train_reply(_reply(_record(model)), xgb_record())
    assert "inconsistent tree counts" in reason


def test_xgb_new_trees_checks_the_round_count(xgb):
    data = xgb.DMatrix(np.zeros((4, 2)), label=np.zeros(4))
    booster = xgb.train({"base_score": 0.0}, data, num_boost_round=2)
    with pytest.raises(ConfigError, match="num_global_rounds must be between 0 and 1"):
        xgb_new_trees(booster, 2)


def _data(seed, rows=40, features=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    return x, x[:, 0] * 2.0 + np.sin(x[:, 1]) + 0.1 * seed


def _margin(booster, xgb, x):
    return booster.predict(xgb.DMatrix(x), output_margin=True)


def test_pooled_booster_predicts_the_sum_of_the_nodes_trees(xgb):
    params = {"objective": "multi:softprob", "num_class": 3, "num_parallel_tree": 2}
    params.update({"max_depth": 2, "base_score": 0.5})
    sets = [_data(seed) for seed in range(3)]
    dmatrices = [xgb.DMatrix(x, label=np.digitize(y, [-1.0, 1.0])) for x, y in sets]
    start = xgb.train(params, dmatrices[0], num_boost_round=1)
    global_record = xgb_record(start)
    nodes = [
        xgb.train(params, d, num_boost_round=2, xgb_model=xgb_booster(global_record, params))
        for d in dmatrices[1:]
    ]
    merged = _aggregate(FedXgbBagging(), global_record, [xgb_new_trees(b, 1) for b in nodes])
    booster = xgb_booster(merged)
    assert booster.num_boosted_rounds() == 5
    x = sets[0][0]
    base = _margin(start, xgb, x)
    expected = base + sum(_margin(b, xgb, x) - base for b in nodes)
    np.testing.assert_allclose(_margin(booster, xgb, x), expected, rtol=1e-5, atol=1e-5)


def test_three_rounds_on_a_grid(make_grid, xgb):
    params = {"objective": "reg:squarederror", "base_score": 0.0, "eta": 0.1, "max_depth": 3}

    def train(msg, context):
        x, y = _data(context.node_id)
        booster = xgb_booster(msg.content.arrays(), params)
        start = booster.num_boosted_rounds() if booster is not None else 0
        booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=2, xgb_model=booster)
        metrics = MetricRecord({"num-examples": len(y)})
        return msg.reply(RecordDict({"arrays": xgb_new_trees(booster, start), "metrics": metrics}))

    def evaluate_fn(server_round, arrays):
        booster = xgb_booster(arrays)
        if booster is None:
            return None
        x, y = _data(1)
        return {"rmse": float(np.sqrt(np.mean((booster.predict(xgb.DMatrix(x)) - y) ** 2)))}

    strategy = FedXgbBagging(fraction_evaluate=0.0)
    result = strategy.start(make_grid(train), xgb_record(), num_rounds=3, evaluate_fn=evaluate_fn)
    assert [r.train.num_ok for r in result.rounds[1:]] == [3, 3, 3]
    assert xgb_booster(result.arrays).num_boosted_rounds() == 3 * 3 * 2
    rmse = result.metrics("server")
    assert rmse[3]["rmse"] < rmse[1]["rmse"]


def test_module_imports_neither_torch_nor_xgboost():
    code = (
        "import sys\n"
        "import pollinate.strategy._fedprox, pollinate.strategy._scaffold\n"
        "import pollinate.strategy._qfedavg, pollinate.strategy._xgb\n"
        "print(sorted(m for m in ('torch', 'xgboost') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
