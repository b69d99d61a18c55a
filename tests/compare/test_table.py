import dataclasses
import json

import numpy as np
import pytest

from pollinate import ArrayRecord
from pollinate.compare import Comparison, ModelRun, Predictions, RoundScore

LABELS = np.array([0, 0, 1, 1, 2, 2])


def _run(name, partition, predicted):
    final = Predictions(LABELS, predicted, loss=1.0)
    curve = (RoundScore(0, 0.1, 2.0), RoundScore.of(1, final))
    return ModelRun(name, partition, curve, final, ArrayRecord(), rounds_trained=1)


@pytest.fixture
def comparison():
    return Comparison(
        models=(
            _run("isolated-0", 0, [0, 0, 0, 0, 2, 2]),  # partition 0 never saw label 1
            _run("isolated-1", 1, [0, 1, 1, 1, 1, 1]),  # partition 1 never saw label 2
            _run("federated", None, [0, 0, 1, 1, 2, 1]),
        ),
        label_counts={0: {0: 5, 2: 5}, 1: {0: 3, 1: 4, 2: 0}},
        num_rounds=1,
    )


def test_missing_labels_are_the_test_labels_a_partition_never_holds(comparison):
    assert comparison.missing_labels() == {0: (1,), 1: (2,)}


def test_accuracy_on_each_partitions_missing_labels(comparison):
    federated = comparison.federated
    assert comparison.accuracy_on_missing(federated) == {0: 1.0, 1: 0.5}
    assert comparison.accuracy_on_missing(comparison.isolated[0]) == {0: 0.0, 1: 1.0}
    assert comparison.accuracy_on_missing(comparison.isolated[1]) == {0: 1.0, 1: 0.0}


def test_confusion_matrix_has_true_labels_as_rows(comparison):
    np.testing.assert_array_equal(
        comparison.confusion(comparison.federated), [[2, 0, 0], [0, 2, 0], [0, 1, 1]]
    )
    assert comparison.confusion(comparison.isolated[0]).sum() == len(LABELS)


def test_json_table_is_strict_json_with_every_model(comparison):
    table = json.loads(json.dumps(comparison.to_json(), allow_nan=False))
    assert table["missing_labels"] == {"0": [1], "1": [2]}
    assert [m["model"] for m in table["models"]] == ["isolated-0", "isolated-1", "federated"]
    federated = table["models"][2]
    assert federated["accuracy"] == pytest.approx(5 / 6)
    assert federated["accuracy_on_missing"] == {"0": 1.0, "1": 0.5}
    assert table["models"][0]["num_examples"] == 10
    assert federated["num_examples"] == 10 + 7  # the partitions that trained in it
    assert [m["rounds_trained"] for m in table["models"]] == [1, 1, 1]
    assert comparison.curves_json()["federated"][0] == {"round": 0, "accuracy": 0.1, "loss": 2.0}


def test_markdown_bolds_each_isolated_models_own_missing_labels(comparison):
    lines = comparison.to_markdown().splitlines()
    assert lines[0] == "| model | examples | accuracy | p0 never saw 1 | p1 never saw 2 |"
    assert lines[2] == "| isolated-0 | 10 | 66.7% | **0.0%** | 100.0% |"
    assert lines[4] == "| federated | 17 | 83.3% | 100.0% | 50.0% |"


def test_a_rounds_column_appears_when_a_node_sat_out_rounds(comparison):
    models = (
        dataclasses.replace(comparison.isolated[0], rounds_trained=0),
        *comparison.models[1:],
    )
    table = Comparison(models, comparison.label_counts, num_rounds=1).table()
    assert table.header[:3] == ["model", "rounds", "examples"]
    assert [row[1].text for row in table.rows] == ["0", "1", "1"]
    assert table.rows[2][2].text == "7"  # partition 0 never trained in the federation


def test_many_partitions_share_one_column_of_own_missing_accuracy(comparison):
    table = comparison.table(max_subset_columns=1)
    assert table.header[-1] == "on own missing labels (federated: mean)"
    own = [row[-1] for row in table.rows]
    assert [(c.text, c.own) for c in own] == [("0.0%", True), ("0.0%", True), ("75.0%", False)]


def test_without_label_counts_the_table_has_overall_accuracy_and_says_why(comparison):
    unknown = Comparison(comparison.models, label_counts=None, num_rounds=1)
    assert unknown.missing_labels() == {}
    assert "query.label-counts" in unknown.to_markdown()
    assert unknown.to_json()["models"][0]["accuracy_on_missing"] == {}


def test_partitions_missing_the_same_labels_share_a_column(comparison):
    counts = {**comparison.label_counts, 2: {0: 1, 2: 1}}  # partition 2 misses 1, as 0 does
    models = (*comparison.isolated, _run("isolated-2", 2, [0, 0, 2, 2, 2, 2]), comparison.federated)
    table = Comparison(models, counts, num_rounds=1).table()
    assert table.header[3:] == ["p0,2 never saw 1", "p1 never saw 2"]
    assert [[c.own for c in row[3:]] for row in table.rows] == [
        [True, False],
        [False, True],
        [True, False],
        [False, False],
    ]
