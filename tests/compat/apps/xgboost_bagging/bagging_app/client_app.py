"""bagging_app's ClientApp: grows new trees on local rows; scores the bagged ensemble."""

import xgboost as xgb
from sklearn.metrics import roc_auc_score

from bagging_app.task import booster_params, from_bytes, node_data, to_bytes
from pollinate.compat.flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from pollinate.compat.flwr.clientapp import ClientApp

app = ClientApp()


def _data(context: Context):
    return node_data(context.node_config["partition-id"], context.node_config["num-partitions"])


@app.train()
def train(msg: Message, context: Context):
    """Add ``trees-per-round`` trees to the global ensemble and send back only the new ones."""
    params = booster_params(context.run_config)
    new_trees = context.run_config["trees-per-round"]
    train_rows, _, _ = _data(context)
    if msg.content["config"]["server-round"] == 1:  # nothing to start from yet
        booster = xgb.train(params, train_rows, num_boost_round=new_trees)
    else:
        booster = from_bytes(msg.content["arrays"]["0"].numpy(), params)
        grown = booster.num_boosted_rounds()
        for step in range(grown, grown + new_trees):
            booster.update(train_rows, step)
        booster = booster[grown : grown + new_trees]
    content = {
        "arrays": ArrayRecord([to_bytes(booster)]),
        "metrics": MetricRecord({"num-examples": train_rows.num_row()}),
    }
    return Message(content=RecordDict(content), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    """The area under the ROC curve of the global ensemble on this node's test rows."""
    booster = from_bytes(msg.content["arrays"]["0"].numpy(), booster_params(context.run_config))
    _, features, labels = _data(context)
    auc = roc_auc_score(labels, booster.predict(xgb.DMatrix(features)))
    metrics = MetricRecord({"auc": float(auc), "num-examples": len(labels)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
