"""Read what the trackers wrote back, with each library's own readers."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WANDB_HEADER = 7
"""A ``.wandb`` file starts with ``:W&B``, a magic number and a version (7 bytes)."""
WANDB_BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def tensorboard_run(log_dir: Path) -> Any:
    """TensorBoard's EventAccumulator over ``log_dir``, loaded, every tensor kept."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    return accumulator.Reload()


def tensorboard_scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar tag's values by step, as TensorBoard reads them."""
    from tensorboard.util import tensor_util

    run = tensorboard_run(log_dir)
    scalars = set(run.PluginTagToContent("scalars"))
    return {
        tag: {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in run.Tensors(tag)}
        for tag in run.Tags()["tensors"]
        if tag in scalars
    }


def wandb_records(run_dir: Path) -> list[Any]:
    """The protobuf records of an offline W&B run (its ``run-*.wandb`` file).

    wandb 0.31 reads these files in its Go core only; the file is LevelDB's log format
    (32 KiB blocks, records split into chunks with a 7-byte header) holding wandb's own
    ``Record`` messages, parsed here with wandb's protobuf classes.
    """
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("run-*.wandb")
    records = []
    for payload in _leveldb_records(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _leveldb_records(data: bytes) -> Iterator[bytes]:
    assert data[:4] == b":W&B"
    pos, pending = WANDB_HEADER, b""
    while pos + 7 <= len(data):
        left = WANDB_BLOCK - pos % WANDB_BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        pending += chunk
        if kind in (FULL, LAST):
            yield pending
            pending = b""
