"""Train the federated model and one isolated model per node, and score every round of each.

The federated model is the app's own ServerApp, run unchanged. Each isolated model starts
from the same initial weights and is trained by the same ClientApp on one node's data alone,
for the same number of rounds, so every model gets the same local budget (rounds x local
epochs). Isolated training is a federation without aggregation: each round, every node gets
back its own model, so all nodes train side by side on any backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..client import ClientApp
from ..context import Context, UserConfig, UserConfigValue
from ..errors import AppError, RoundError
from ..message import Message, MessageType
from ..records import ArrayRecord, ConfigRecord, RecordDict
from ..server import Grid, Result, RunObserver, ServerApp, save_arrays
from ..server import RoundRecord as _RoundRecord
from ..simulation import NodeConfigFn, default_node_config, run_simulation
from ..strategy._validate import ARRAYS_KEY, CONFIG_KEY
from ._hooks import LABEL_COUNTS, PredictFn, Predictions, call_predict, read_label_counts
from ._table import Comparison, ModelRun, RoundScore

__all__ = ["run_comparison"]

FEDERATED_DIR = "federated"
ISOLATED_DIR = "isolated"

StatusFn = Callable[[str], None]


def run_comparison(
    server_app: ServerApp,
    client_app: ClientApp | str,
    predict: PredictFn,
    *,
    num_nodes: int,
    backend: str = "inline",
    backend_options: Mapping[str, object] | None = None,
    run_config: UserConfig | None = None,
    node_config_fn: NodeConfigFn = default_node_config,
    app_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    observers: Sequence[RunObserver] = (),
    status: StatusFn | None = None,
) -> Comparison:
    """Train the federated model and ``num_nodes`` isolated ones; score each with ``predict``.

    ``predict(arrays, run_config)`` returns the test set's true and predicted labels for a
    model; the ClientApp may answer ``query.label-counts`` so each node's missing labels are
    known (see ``pollinate.compare.label_counts``). With ``out_dir``, the federated run's files
    go to ``out_dir/federated`` and each isolated model to ``out_dir/isolated``.
    ``observers`` watch the federated run; ``status`` hears how isolated training goes.
    """
    config: dict[str, UserConfigValue] = dict(run_config or {})
    say = status or (lambda text: None)
    out_root = Path(out_dir) if out_dir is not None else None

    def simulate(app: ServerApp, out: Path | None, observers: Sequence[RunObserver]) -> None:
        run_simulation(
            app,
            client_app,
            num_nodes=num_nodes,
            backend=backend,
            backend_options=backend_options,
            run_config=config,
            node_config_fn=node_config_fn,
            app_dir=app_dir,
            out_dir=out,
            observers=observers,
        )

    scorer = _Scorer(predict, config)
    simulate(server_app, out_root / FEDERATED_DIR if out_root else None, [*observers, scorer])
    initial, federated = scorer.finished()
    num_rounds = federated.curve[-1].server_round
    isolated = _IsolatedTraining(predict, config, initial, num_rounds, say)
    simulate(isolated.app(), None, ())
    if out_root is not None:
        for run in isolated.runs:
            save_arrays(run.arrays, out_root / ISOLATED_DIR / f"partition-{run.partition}.npz")
    _check_same_test_set([*isolated.runs, federated])
    return Comparison(
        models=(*isolated.runs, federated),
        label_counts=isolated.label_counts,
        num_rounds=num_rounds,
    )


class _Scorer:
    """Observes the federated run: scores the global model after every round."""

    def __init__(self, predict: PredictFn, run_config: Mapping[str, UserConfigValue]) -> None:
        self.predict = predict
        self.run_config = run_config
        self.initial: ArrayRecord | None = None
        self.final: tuple[ArrayRecord, Predictions] | None = None
        self.curve: list[RoundScore] = []

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Nothing to score yet."""

    def on_round(self, record: _RoundRecord) -> None:
        """The model comes with ``on_arrays``."""

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Score the global model of this round (round 0: the initial model)."""
        if server_round == 0:
            self.initial = arrays
        predictions = call_predict(self.predict, arrays, self.run_config)
        self.curve.append(RoundScore.of(server_round, predictions))
        self.final = (arrays, predictions)

    def on_result(self, result: Result) -> None:
        """Nothing more to score."""

    def finished(self) -> tuple[ArrayRecord, ModelRun]:
        """The initial model and the federated model's run; an AppError if rounds are missing."""
        if self.initial is None or self.final is None or len(self.curve) < 2:
            raise AppError(
                "pollinate compare needs the ServerApp to report its initial model and each "
                "round's model: run the rounds with strategy.start(...), or call "
                "pollinate.server.report_arrays(server_round, arrays) from your own loop "
                "(round 0 for the initial model)"
            )
        arrays, predictions = self.final
        run = ModelRun("federated", None, tuple(self.curve), predictions, arrays)
        return self.initial, run


class _IsolatedTraining:
    """A ServerApp that trains each node's own model on its own data, with no aggregation."""

    def __init__(
        self,
        predict: PredictFn,
        run_config: Mapping[str, UserConfigValue],
        initial: ArrayRecord,
        num_rounds: int,
        status: StatusFn,
    ) -> None:
        self.predict = predict
        self.run_config = run_config
        self.initial = initial
        self.num_rounds = num_rounds
        self.status = status
        self.runs: list[ModelRun] = []
        self.label_counts: dict[int, dict[int, int]] | None = None

    def app(self) -> ServerApp:
        """The ServerApp to run on the same federation as the federated model."""
        app = ServerApp()

        @app.main()
        def main(grid: Grid, context: Context) -> Result:
            self._train(grid)
            return Result(self.initial)

        return app

    def _train(self, grid: Grid) -> None:
        nodes = sorted(grid.node_ids())
        self.status("asking each node which labels it holds")
        self.label_counts = self._ask_label_counts(grid, nodes)
        first = RoundScore.of(0, call_predict(self.predict, self.initial, self.run_config))
        models = dict.fromkeys(nodes, self.initial)
        curves: dict[int, list[RoundScore]] = {node: [first] for node in nodes}
        finals: dict[int, Predictions] = {}
        for server_round in range(1, self.num_rounds + 1):
            self.status(
                f"training {len(nodes)} isolated models: round {server_round}/{self.num_rounds}"
            )
            models = self._round(grid, server_round, models)
            for node, arrays in models.items():
                finals[node] = call_predict(self.predict, arrays, self.run_config)
                curves[node].append(RoundScore.of(server_round, finals[node]))
        self.runs = [
            ModelRun(f"isolated-{node - 1}", node - 1, tuple(curves[node]), finals[node], arrays)
            for node, arrays in models.items()
        ]

    def _round(
        self, grid: Grid, server_round: int, models: dict[int, ArrayRecord]
    ) -> dict[int, ArrayRecord]:
        config = ConfigRecord({"server-round": server_round})
        messages = [
            Message.create(
                RecordDict({ARRAYS_KEY: arrays, CONFIG_KEY: ConfigRecord(config)}),
                node,
                MessageType.TRAIN,
                run_id=grid.run_id,
            )
            for node, arrays in models.items()
        ]
        trained = dict(models)
        for reply in grid.send_and_receive(messages):
            node = reply.metadata.src_node_id
            arrays = None if reply.error else reply.content.get(ARRAYS_KEY)
            if not isinstance(arrays, ArrayRecord):
                reason = reply.error.reason if reply.error else "its reply has no 'arrays'"
                raise RoundError(
                    f"isolated training of partition {node - 1} failed in round "
                    f"{server_round}: {reason}"
                )
            trained[node] = arrays
        return trained

    @staticmethod
    def _ask_label_counts(grid: Grid, nodes: list[int]) -> dict[int, dict[int, int]] | None:
        messages = [
            Message.create(RecordDict(), node, LABEL_COUNTS, run_id=grid.run_id) for node in nodes
        ]
        counts = {
            reply.metadata.src_node_id - 1: read_label_counts(reply)
            for reply in grid.send_and_receive(messages)
        }
        if any(c is None for c in counts.values()):
            return None
        return {partition: c for partition, c in sorted(counts.items()) if c is not None}


def _check_same_test_set(runs: list[ModelRun]) -> None:
    """Every model must be scored on the same examples, or the table compares nothing."""
    labels = runs[0].final.labels
    for run in runs[1:]:
        if not np.array_equal(run.final.labels, labels):
            raise AppError(
                "the predict function returned different test labels for different models: "
                "it must score every model on the same test set, in the same order"
            )
