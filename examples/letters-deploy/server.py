"""The server: FedAvg over gRPC, logging accuracy and saving the model after every round.

    python server.py --certs certs --rounds 5

Mutual TLS: only clients with a certificate from ``certs/ca.pem``'s CA get in
(``pollinate certs --out certs --nodes 3`` writes them). It waits for ``--clients``
clients (3), runs the rounds, scores each round's global model on
``data/test`` itself (centralized evaluation), and writes into ``--out`` (``out/``):

    metrics.jsonl, model.npz, checkpoints/   the run folder pollinate records
    models/round-N.npz                       the global model after round N (the strategy)
    history.png                              accuracy per round
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import task  # task.py, beside this script

import pollinate
from pollinate import ArrayRecord, FedAvg, Message, MetricRecord
from pollinate.errors import ConfigError
from pollinate.server import save_arrays
from pollinate.strategy import streams_replies

log = logging.getLogger("server")

TRAINING = {"batch-size": 32, "learning-rate": 0.05}
"""Sent to the clients with the run config, with ``local-epochs``."""


class SavingFedAvg(FedAvg):
    """FedAvg that logs the clients' aggregated accuracy and saves the model every round."""

    def __init__(self, models_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models_dir = models_dir

    @streams_replies  # it reads the replies once (super() does): they need not all be held
    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        """Average the clients' models as FedAvg does, then save the result."""
        new_arrays, metrics, state = super().aggregate_train(server_round, arrays, replies, state)
        if new_arrays is not None:
            path = self.models_dir / f"round-{server_round}.npz"
            save_arrays(new_arrays, path)
            log.info("round %d: saved the global model to %s", server_round, path)
        return new_arrays, metrics, state

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord:
        """Average the clients' scores (weighted by their images) and log the accuracy."""
        metrics = super().aggregate_evaluate(server_round, replies)  # a list: read twice
        if "accuracy" in metrics:
            log.info(
                "round %d: aggregated accuracy %.3f (%d clients, %d held-back images)",
                server_round,
                metrics["accuracy"],
                len(replies),
                metrics["num-examples"],
            )
        return metrics


def centralized(test_set: task.Split) -> Callable[[int, ArrayRecord], dict[str, float]]:
    """The evaluate_fn: each round's global model scored on the server's own test images."""

    def evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        loss, accuracy = task.test(arrays.to_numpy(), test_set)
        log.info(
            "round %d: test accuracy %.3f, loss %.3f (%d images)",
            server_round,
            accuracy,
            loss,
            len(test_set),
        )
        return {"loss": loss, "accuracy": accuracy}

    return evaluate


def plot_history(result: pollinate.Result, path: Path) -> None:
    """Accuracy per round: the server's test set, and the clients' held-back images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    for per_round, label in (
        (result.metrics("server"), "test set, on the server (centralized)"),
        (result.metrics("evaluate"), "clients' held-back images (aggregated)"),
    ):
        rounds = sorted(r for r in per_round if "accuracy" in per_round[r])
        ax.plot(rounds, [per_round[r]["accuracy"] for r in rounds], marker="o", label=label)
    ax.set(xlabel="round", ylabel="accuracy", ylim=(0.0, 1.02), title="letters-deploy: FedAvg")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Serve the run, then print the history and draw it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0:9400", help="default: 0.0.0.0:9400")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--certs",
        type=Path,
        default=Path("certs"),
        help="folder with server.pem, server.key and ca.pem, the CA of the clients' "
        "certificates (default: certs)",
    )
    tls.add_argument("--insecure", action="store_true", help="plain text, no TLS")
    parser.add_argument("--rounds", type=int, default=5, help="default: 5")
    parser.add_argument("--clients", type=int, default=3, help="clients to wait for (default: 3)")
    parser.add_argument("--local-epochs", type=int, default=5, help="default: 5")
    parser.add_argument(
        "--test-dir", type=Path, default=Path("data/test"), help="default: data/test"
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="default: out")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial model (default: 0)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout
    )

    test_set, _ = task.load_folder(args.test_dir)  # every image of the folder
    models_dir = args.out / "models"
    for stale in models_dir.glob("round-*.npz"):  # from an earlier run into the same --out
        stale.unlink()
    strategy = SavingFedAvg(
        models_dir,
        min_train_nodes=args.clients,
        min_evaluate_nodes=args.clients,
        min_available_nodes=args.clients,
        seed=args.seed,
    )
    result = pollinate.start_server(
        args.address,
        strategy=strategy,
        num_rounds=args.rounds,
        initial_arrays=task.named(task.init_weights(args.seed)),
        evaluate_fn=centralized(test_set),
        run_config={"local-epochs": args.local_epochs, **TRAINING},
        certs=None if args.insecure else args.certs,
        insecure=args.insecure,
        mtls=not args.insecure,
        min_nodes=args.clients,
        out_dir=args.out,
        on_listening=lambda port: log.info(
            "listening on port %d (%s)", port, "plain text" if args.insecure else "mutual TLS"
        ),
    )

    server, clients = result.metrics("server"), result.metrics("evaluate")
    print("round  test accuracy  aggregated accuracy")
    for server_round in sorted(server):
        aggregated = clients.get(server_round, {}).get("accuracy")
        shown = "" if aggregated is None else f"{aggregated:.3f}"
        print(f"{server_round:>5}  {server[server_round]['accuracy']:>13.3f}  {shown:>19}")
    plot_history(result, args.out / "history.png")
    final = server[max(server)]["accuracy"]
    print(f"final test accuracy {final:.3f}; models in {models_dir}/, plot {args.out}/history.png")


if __name__ == "__main__":
    try:
        main()
    except ConfigError as err:  # a missing folder or certificate: one line, not a traceback
        raise SystemExit(f"error: {err}") from None
