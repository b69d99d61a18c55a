import numpy as np
import pytest
from PIL import Image

from pollinate import ArrayRecord, ClientApp, Result, ServerApp
from pollinate.compare import Predictions, run_comparison, write_comparison
from pollinate.errors import AppError, RoundError
from pollinate.server import load_arrays

from .conftest import BLOBS_APP, BLOBS_CONFIG


def _compare(blobs, client_app=None, server_app=None, predict=None, **options):
    return run_comparison(
        server_app or blobs.server,
        client_app or blobs.client,
        predict or blobs.predict,
        num_nodes=3,
        run_config={**BLOBS_CONFIG, **options.pop("config", {})},
        **options,
    )


@pytest.fixture(scope="module")
def comparison(blobs):
    return _compare(blobs)


def test_isolated_models_never_learn_their_missing_labels_and_federation_does(comparison):
    assert comparison.missing_labels() == {0: (0, 1), 1: (2, 3), 2: (4, 5)}
    federated = comparison.federated
    for model in comparison.isolated:
        assert comparison.accuracy_on_missing(model)[model.partition] == 0.0
        assert model.final.accuracy() < 0.75
        assert federated.final.accuracy() > model.final.accuracy() + 0.2
    assert min(comparison.accuracy_on_missing(federated).values()) > 0.9


def test_every_model_has_a_score_per_round_from_the_same_initial_model(comparison):
    assert comparison.num_rounds == 4
    initial = {model.curve[0] for model in comparison.models}
    assert len(initial) == 1  # round 0 is the same initial model for all
    for model in comparison.models:
        assert [s.server_round for s in model.curve] == [0, 1, 2, 3, 4]
        assert model.curve[-1].accuracy == model.final.accuracy()


def test_isolated_training_gets_the_same_local_budget_as_federation(blobs, comparison):
    """Isolated partition p is exactly `rounds` x local steps of SGD on p, from the same start."""
    model = comparison.isolated[1]
    arrays = load_initial(blobs)
    x, y = blobs.partition(1)
    for _ in range(comparison.num_rounds):
        arrays = blobs.sgd(arrays, x, y, BLOBS_CONFIG["local-steps"])
    for name in ("w", "b"):
        np.testing.assert_allclose(model.arrays[name].numpy(), arrays[name].numpy(), rtol=1e-12)


def load_initial(blobs):
    return ArrayRecord({"w": np.zeros((2, blobs.CLASSES)), "b": np.zeros(blobs.CLASSES)})


def test_same_app_gives_the_same_table(blobs, comparison):
    assert _compare(blobs).to_json() == comparison.to_json()


@pytest.mark.slow
def test_process_backend_gives_the_same_table(blobs, comparison):
    on_workers = _compare(
        blobs,
        client_app="blobs:client",
        backend="process",
        backend_options={"num_workers": 2},
        app_dir=BLOBS_APP,
    )
    assert on_workers.to_json() == comparison.to_json()


def test_files_are_the_table_curves_and_a_readable_confusion_matrix_per_model(
    blobs, comparison, tmp_path
):
    files = write_comparison(comparison, tmp_path, about={"app": "blobs"})
    assert files.table_md.read_text() == comparison.to_markdown()
    assert files.table_json.name == "comparison.json"
    assert [p.name for p in files.confusion] == [
        "isolated-0.png",
        "isolated-1.png",
        "isolated-2.png",
        "federated.png",
    ]
    for image in (files.curves, *files.confusion):
        with Image.open(image) as png:
            assert png.format == "PNG" and png.width >= 400 and png.height >= 300


def test_out_dir_keeps_the_federated_run_and_each_isolated_model(blobs, tmp_path):
    comparison = _compare(blobs, out_dir=tmp_path)
    assert (tmp_path / "federated" / "metrics.jsonl").is_file()
    assert (tmp_path / "federated" / "checkpoints" / "round-0000.npz").is_file()
    for model in comparison.isolated:
        saved = load_arrays(tmp_path / "isolated" / f"partition-{model.partition}.npz")
        assert saved == model.arrays


def test_without_a_label_counts_handler_only_overall_accuracy_is_compared(blobs):
    client = ClientApp()
    client.train()(blobs.train)
    client.evaluate()(blobs.evaluate)
    comparison = _compare(blobs, client_app=client)
    assert comparison.label_counts is None and comparison.missing_labels() == {}
    assert len(comparison.models) == 4


def test_a_failing_label_counts_handler_stops_with_its_reason(blobs):
    with pytest.raises(AppError, match="label counts are switched off"):
        _compare(blobs, config={"label-counts": False})


def test_a_server_app_that_reports_no_models_is_told_how_to(blobs):
    silent = ServerApp()

    @silent.main()
    def main(grid, context):
        return Result(load_initial(blobs))

    with pytest.raises(AppError, match="report_arrays"):
        _compare(blobs, server_app=silent)


def test_predict_must_return_predictions_on_one_test_set(blobs):
    with pytest.raises(AppError, match="returned dict"):
        _compare(blobs, predict=lambda arrays, config: {"accuracy": 1.0})
    calls = []

    def shifting(arrays, config):
        calls.append(1)
        return Predictions([len(calls) % 2, 1], [0, 1])

    with pytest.raises(AppError, match="same test set"):
        _compare(blobs, predict=shifting)


def test_isolated_training_that_fails_names_the_partition_and_round(blobs):
    client = ClientApp()

    @client.train()
    def train(msg, context):
        if context.node_config["partition-id"] == 2 and msg.content.config()["server-round"] > 1:
            raise ValueError("disk full")
        return blobs.train(msg, context)

    client.query("label-counts")(blobs.count_labels)
    # The federated run carries on without partition 2 (min_train_nodes=1); isolated cannot.
    with pytest.raises(RoundError, match=r"partition 2 failed in round 2: .*disk full"):
        _compare(blobs, client_app=client, config={"num-server-rounds": 2})
