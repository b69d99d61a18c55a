"""quickstart_xgboost: A Flower / XGBoost app."""

import numpy as np
import xgboost as xgb


def train_test_split(partition, test_fraction, seed):
    """Split the data into train and validation set given split rate."""
    train_test = partition.train_test_split(test_size=test_fraction, seed=seed)
    partition_train = train_test["train"]
    partition_test = train_test["test"]

    num_train = len(partition_train)
    num_test = len(partition_test)

    return partition_train, partition_test, num_train, num_test


def transform_dataset_to_dmatrix(data):
    """Transform dataset to DMatrix format for xgboost."""
    batch = data[:]
    x = np.asarray(batch["inputs"], dtype=np.float32)
    y = np.asarray(batch["label"], dtype=np.float32)
    return xgb.DMatrix(x, label=y)


def load_data(partition_id, num_clients):
    """Stand-in for FederatedDataset("jxie/higgs") (no download here): sklearn's bundled
    breast cancer set, also a binary task, in IID partitions."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    part = np.array_split(order, num_clients)[partition_id]
    x, y = x[part].astype(np.float32), y[part].astype(np.float32)
    num_train = int(0.8 * len(x))
    train_dmatrix = xgb.DMatrix(x[:num_train], label=y[:num_train])
    valid_dmatrix = xgb.DMatrix(x[num_train:], label=y[num_train:])
    return train_dmatrix, valid_dmatrix, num_train, len(x) - num_train


def replace_keys(input_dict, match="-", target="_"):
    """Recursively replace match string with target string in dictionary keys."""
    new_dict = {}
    for key, value in input_dict.items():
        new_key = key.replace(match, target)
        if isinstance(value, dict):
            new_dict[new_key] = replace_keys(value, match, target)
        else:
            new_dict[new_key] = value
    return new_dict
