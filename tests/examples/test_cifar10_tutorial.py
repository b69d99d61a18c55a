"""The CIFAR-10 tutorial: 10 clients train, 5 evaluate, and a missing archive is one clear error."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pollinate import ClientApp, Context, Message, ServerApp, run_simulation
from pollinate.client import Handler
from pollinate.errors import ConfigError

from .conftest import REPO, Example

TRAIN_IMAGES_PER_BATCH = 79
"""395 training images: IID shares of 39 and 40, so validation sets of 3 and 4 images."""


@pytest.fixture(scope="module")
def tutorial() -> Example:
    return Example(REPO / "examples" / "cifar10-tutorial", "cifar10_tutorial")


@pytest.fixture(scope="module")
def fake_cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cifar-10-binary.tar.gz: random pixels, labels 0..9 in turn, in five batches."""
    folder = tmp_path_factory.mktemp("fake-cifar")
    rng = np.random.default_rng(0)
    batches = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for name in batches:
            n = TRAIN_IMAGES_PER_BATCH
            labels = (np.arange(n) % 10).astype(np.uint8)
            pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
            records = np.concatenate([labels[:, None], pixels], axis=1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(records)
            tar.addfile(info, io.BytesIO(records))
    return folder


def test_one_round_trains_on_all_ten_and_weights_five_evaluations_by_examples(
    tutorial: Example, fake_cifar_dir: Path
) -> None:
    replies: dict[str, list[tuple[int, dict[str, Any]]]] = {"train": [], "evaluate": []}

    def record(msg: Message, context: Context, call_next: Handler) -> Message:
        reply = call_next(msg, context)
        partition_id = int(context.node_config["partition-id"])
        replies[msg.metadata.message_type].append((partition_id, dict(reply.content.metrics())))
        return reply

    client_app = ClientApp(client_fn=tutorial.module("client_app").client_fn, mods=[record])
    server_app = tutorial.module("server_app").app
    assert isinstance(server_app, ServerApp)
    config = {**tutorial.config, "data-dir": str(fake_cifar_dir), "num-server-rounds": 1}
    result = run_simulation(
        server_app, client_app, num_nodes=10, app_dir=tutorial.app_dir, run_config=config
    )

    (last,) = result.rounds
    assert last.train is not None and last.evaluate is not None
    assert (last.train.num_ok, last.evaluate.num_ok) == (10, 5)
    assert sorted(p for p, _ in replies["train"]) == list(range(10))
    assert len({p for p, _ in replies["evaluate"]}) == 5
    sizes = np.array([m["num-examples"] for _, m in replies["evaluate"]], dtype=float)
    accuracies = np.array([m["accuracy"] for _, m in replies["evaluate"]])
    weighted = float(sizes @ accuracies / sizes.sum())
    assert weighted != pytest.approx(accuracies.mean())  # else the test could not tell them apart
    assert last.evaluate.metrics["accuracy"] == pytest.approx(weighted, rel=1e-12)
    assert last.evaluate.metrics["num-examples"] == sizes.sum()
    trained = sum(m["num-examples"] for _, m in replies["train"])
    assert trained == 5 * TRAIN_IMAGES_PER_BATCH - 35  # 5 validation sets of 3, 5 of 4


def test_a_missing_archive_names_the_file_and_where_to_get_it(
    tutorial: Example, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        tutorial.run({"data-dir": str(tmp_path)}, num_nodes=10)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-binary.tar.gz") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message


@pytest.mark.slow
def test_pollinate_run_without_the_data_fails_with_one_error_line(
    tutorial: Example, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "pollinate.cli", "run", str(tutorial.app_dir)]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "POLLINATE_DATA": str(cache)},
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    (error,) = errors
    assert str(cache / "cifar10" / "cifar-10-binary.tar.gz") in error
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in error
    assert "data-dir" in error
