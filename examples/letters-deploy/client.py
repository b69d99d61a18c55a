"""One client: trains the global model on its own image folder, over gRPC, until the server ends.

    python client.py --server localhost:9400 --data-dir data/client-0 --root-cert certs/ca.pem \
        --cert certs/node1.pem --key certs/node1.key

A fifth of the folder (seeded) is held back: the client scores each round's global model on
it, and the server averages those scores. The training settings (epochs, batch size,
learning rate) come from the server with the run config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy.typing as npt
import task  # task.py, beside this script

import pollinate
from pollinate.errors import ConfigError
from pollinate.records import ConfigValue

log = logging.getLogger("client")

VALIDATION_SPLIT = 0.2
DEFAULTS: dict[str, int | float] = {"local-epochs": 5, "batch-size": 32, "learning-rate": 0.05}
"""Used when the server's run config does not set them."""


class FolderClient(pollinate.NumPyClient):
    """Trains the shared MLP on one folder's images and evaluates it on the held-back ones."""

    def __init__(self, train_set: task.Split, held_out: task.Split, seed: int) -> None:
        self.train_set = train_set
        self.held_out = held_out
        self.seed = seed

    def get_parameters(self, config: dict[str, ConfigValue]) -> list[npt.NDArray[Any]]:
        """The local model's weights (asked for only when the server has no initial model)."""
        return task.init_weights(self.seed)

    def fit(
        self, parameters: list[npt.NDArray[Any]], config: dict[str, ConfigValue]
    ) -> tuple[list[npt.NDArray[Any]], int, dict[str, Any]]:
        """Train the global model on this folder for the server's ``local-epochs``."""
        server_round = int(config["server-round"])  # type: ignore[arg-type]
        weights, loss = task.train(
            parameters,
            self.train_set,
            epochs=int(self._setting("local-epochs")),
            batch_size=int(self._setting("batch-size")),
            lr=float(self._setting("learning-rate")),
            seed=self.seed * 1_000 + server_round,
        )
        log.info(
            "round %d: trained on %d images, loss %.3f", server_round, len(self.train_set), loss
        )
        return weights, len(self.train_set), {"train-loss": loss}

    def evaluate(
        self, parameters: list[npt.NDArray[Any]], config: dict[str, ConfigValue]
    ) -> tuple[float, int, dict[str, Any]]:
        """Loss and accuracy of the global model on this folder's held-back images."""
        loss, accuracy = task.test(parameters, self.held_out)
        log.info(
            "round %s: global model scores %.3f on my %d held-back images",
            config["server-round"],
            accuracy,
            len(self.held_out),
        )
        return loss, len(self.held_out), {"accuracy": accuracy}

    def _setting(self, key: str) -> int | float:
        value = self.context.run_config.get(key, DEFAULTS[key])
        assert isinstance(value, (int, float))
        return value


def main() -> None:
    """Read the folder, then serve the server at ``--server`` until it says goodbye."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:9400", help="default: localhost:9400")
    parser.add_argument("--data-dir", type=Path, required=True, help="e.g. data/client-0")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--root-cert",
        type=Path,
        default=Path("certs/ca.pem"),
        help="the CA certificate that signed the server's (default: certs/ca.pem)",
    )
    tls.add_argument("--insecure", action="store_true", help="plain text, no TLS")
    parser.add_argument("--cert", type=Path, help="this client's certificate, e.g. certs/node1.pem")
    parser.add_argument("--key", type=Path, help="its private key, e.g. certs/node1.key")
    parser.add_argument("--seed", type=int, default=0, help="seeds the shuffling (default: 0)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout
    )

    train_set, held_out = task.load_folder(args.data_dir, validation_split=VALIDATION_SPLIT)
    missing = sorted(set(task.CLASSES) - set(task.class_names(train_set)))
    log.info(
        "%s: %d images to train on, %d held back; never sees %s",
        args.data_dir,
        len(train_set),
        len(held_out),
        ", ".join(missing) or "no class",
    )
    client = FolderClient(train_set, held_out, args.seed)
    pollinate.start_client(
        args.server,
        client,
        node_config={"data-dir": str(args.data_dir)},
        root_cert=None if args.insecure else args.root_cert,
        insecure=args.insecure,
        cert=args.cert,
        key=args.key,
    )
    log.info("done: the server ended the run")


if __name__ == "__main__":
    try:
        main()
    except ConfigError as err:  # a missing folder or certificate: one line, not a traceback
        raise SystemExit(f"error: {err}") from None
