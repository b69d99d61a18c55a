"""The data, and the booster as the one byte array it travels as."""

from functools import cache

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

from pollinate.compat.flwr.common.config import unflatten_dict


def booster_params(run_config) -> dict:
    """The run config's ``booster.*`` keys as xgboost parameters, dashes as underscores."""
    nested = unflatten_dict(run_config)["booster"]
    return {key.replace("-", "_"): value for key, value in nested.items()}


def to_bytes(booster: xgb.Booster) -> np.ndarray:
    """The booster serialised as JSON, in a uint8 array."""
    return np.frombuffer(booster.save_raw("json"), dtype=np.uint8)


def from_bytes(raw: np.ndarray, params: dict) -> xgb.Booster:
    """The booster ``to_bytes`` wrote."""
    booster = xgb.Booster(params=params)
    booster.load_model(bytearray(raw.tobytes()))
    return booster


@cache
def _shuffled() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(11).permutation(len(labels))
    return features[order].astype(np.float32), labels[order].astype(np.float32)


def node_data(partition_id: int, num_partitions: int):
    """This node's slice of the rows as (train DMatrix, test features, test labels): 3/4, 1/4."""
    features, labels = _shuffled()
    rows = np.array_split(np.arange(len(labels)), num_partitions)[partition_id]
    cut = len(rows) * 3 // 4
    train = xgb.DMatrix(features[rows[:cut]], label=labels[rows[:cut]])
    return train, features[rows[cut:]], labels[rows[cut:]]
