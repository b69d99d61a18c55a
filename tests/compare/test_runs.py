import numpy as np
import pytest
from PIL import Image

from pollinate import ArrayRecord, ClientApp, RecordDict, Result, ServerApp
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
    for model in comparison.isolated:
        assert model.rounds_trained == comparison.num_rounds
        np.testing.assert_allclose(
            model.arrays["w"].numpy(), replay(blobs, model.partition, model.rounds_trained)
        )


def load_initial(blobs):
    return ArrayRecord({"w": np.zeros((2, blobs.CLASSES)), "b": np.zeros(blobs.CLASSES)})


def replay(blobs, partition, rounds):
    """The weights ``rounds`` rounds of local training on ``partition`` alone give."""
    arrays = load_initial(blobs)
    x, y = blobs.partition(partition)
    for _ in range(rounds):
        arrays = blobs.sgd(arrays, x, y, BLOBS_CONFIG["local-steps"], blobs.LEARNING_RATE)
    return arrays["w"].numpy()


def test_with_sampling_each_node_trains_alone_only_in_the_rounds_it_was_sampled(blobs):
    comparison = _compare(blobs, config={"fraction-train": 0.34, "num-server-rounds": 5})
    rounds = [model.rounds_trained for model in comparison.isolated]
    assert sum(rounds) == 5  # one node sampled per round
    assert comparison.federated.rounds_trained == 5
    for model in comparison.isolated:
        assert len(model.curve) == model.rounds_trained + 1
        np.testing.assert_allclose(
            model.arrays["w"].numpy(), replay(blobs, model.partition, model.rounds_trained)
        )
    assert "rounds" in comparison.table().header


def test_a_client_that_edits_its_message_in_place_cannot_touch_another_nodes_model(blobs):
    client = ClientApp()

    @client.train()
    def train(msg, context):
        reply = blobs.train(msg, context)
        received = msg.content.arrays()
        for name, array in reply.content.arrays().items():
            received[name] = array.numpy()  # reuses the message's record for its reply
        return msg.reply(RecordDict({"arrays": received, "metrics": reply.content.metrics()}))

    client.query("label-counts")(blobs.count_labels)
    comparison = _compare(blobs, client_app=client, config={"num-server-rounds": 2})
    for model in comparison.isolated:
        np.testing.assert_allclose(model.arrays["w"].numpy(), replay(blobs, model.partition, 2))


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


def test_without_a_label_counts_handler_only_overall_accuracy_is_compared(blobs, capsys):
    client = ClientApp()
    client.train()(blobs.train)
    client.evaluate()(blobs.evaluate)
    comparison = _compare(blobs, client_app=client)
    assert comparison.label_counts is None and comparison.missing_labels() == {}
    assert len(comparison.models) == 4
    assert capsys.readouterr() == ("", "")  # its runs show nothing: the caller watches them


def test_a_failing_label_counts_handler_stops_with_its_reason(blobs):
    with pytest.raises(AppError, match="label counts are switched off"):
        _compare(blobs, config={"label-counts": False})


def test_a_server_app_that_reports_no_models_is_told_how_to(blobs):
    silent = ServerApp()

    @silent.main()
    def main(grid, context):
        return Result(load_initial(blobs))

    with pytest.raises(AppError, match=r"grid\.observer\.on_arrays"):
        _compare(blobs, server_app=silent)


def test_a_server_app_running_two_round_sequences_is_refused(blobs):
    twice = ServerApp()

    @twice.main()
    def main(grid, context):
        strategy = blobs.FedAvg(fraction_evaluate=0.0, min_available_nodes=1, min_train_nodes=1)
        config = {"lr": 0.5}
        first = strategy.start(grid, load_initial(blobs), num_rounds=1, train_config=config)
        return strategy.start(grid, first.arrays, num_rounds=1, train_config=config)

    with pytest.raises(AppError, match=r"call strategy\.start once"):
        _compare(blobs, server_app=twice)


def test_loss_is_optional_even_for_some_models_only(blobs, tmp_path):
    calls = []

    def sometimes_loss(arrays, config):
        calls.append(1)
        full = blobs.predict(arrays, config)
        return Predictions(full.labels, full.predicted, full.loss if len(calls) % 2 else None)

    comparison = _compare(blobs, predict=sometimes_loss, config={"num-server-rounds": 2})
    files = write_comparison(comparison, tmp_path)
    with Image.open(files.curves) as png:
        assert png.format == "PNG"


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
