"""Train the federated model and one isolated model per node, and score every round of each.

The federated model is the app's own ServerApp, run unchanged, while a recorder notes which
node trained in which round and with which config. Each isolated model then starts from the
same initial weights and replays exactly that: the same ClientApp trains it on one node's
data alone, in the rounds that node trained, with the config it got. So every isolated model
gets the local budget its node had in the federation. Isolated training is a federation
without aggregation: each node gets back its own model, so nodes train side by side on any
backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..client import ClientApp
from ..context import Context, UserConfig, UserConfigValue
from ..errors import AppError, RoundError
from ..message import Message, MessageType
from ..records import ArrayRecord, ConfigRecord, RecordDict
from ..server import Grid, Result, RunObserver, ServerApp, save_arrays
from ..server._notebook import NotebookView, in_notebook
from ..simulation import (
    Backend,
    ClientAppSource,
    NodeConfigFn,
    PopulationModel,
    Task,
    TaskResult,
    default_node_config,
    make_backend,
    run_simulation,
)
from ..strategy._validate import ARRAYS_KEY, CONFIG_KEY, check_arrays
from ._hooks import LABEL_COUNTS, PredictFn, Predictions, call_predict, read_label_counts
from ._table import Comparison, ModelRun, RoundScore

__all__ = ["run_comparison"]

FEDERATED_DIR = "federated"
ISOLATED_DIR = "isolated"
ROUND_TIMEOUT_S = 3600.0
"""How long an isolated round waits for its nodes, as ``Strategy.start`` does by default."""

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
    population: PopulationModel | None = None,
    verbose: bool = True,
) -> Comparison:
    """Train the federated model and ``num_nodes`` isolated ones; score each with ``predict``.

    ``predict(arrays, run_config)`` returns the test set's true and predicted labels for a
    model; the ClientApp may answer ``query.label-counts`` so each node's missing labels are
    known (see ``pollinate.compare.label_counts``). Node ``i + 1`` holds partition ``i``, as
    in every simulation. With ``out_dir``, the federated run's files go to
    ``out_dir/federated`` and each isolated model to ``out_dir/isolated``.
    ``observers`` watch the federated run; ``status`` hears how isolated training goes.
    ``population`` runs the federated side on its clock (docs/heterogeneity.md); isolated
    training has no rounds to time, so it runs without one.

    In a Jupyter notebook with ``verbose`` (the default), the rounds and isolated training
    show live in the cell's output, and the table, curves and confusion matrices at the end
    (``Comparison.show``); elsewhere nothing is shown (``pollinate compare`` shows its own).
    """
    view = NotebookView() if verbose and in_notebook() else None
    if view is not None:
        view.status("training the federated model")
        observers, status = [*observers, view], _both(status, view.status)
    try:
        comparison = _compare(
            server_app,
            client_app,
            predict,
            num_nodes,
            backend,
            backend_options,
            run_config,
            node_config_fn,
            app_dir,
            out_dir,
            observers,
            status,
            population,
        )
    except BaseException:
        if view is not None:
            view.status("stopped before the end (error below)")
        raise
    if view is not None:
        view.status("finished")
        comparison.show()
    return comparison


def _compare(
    server_app: ServerApp,
    client_app: ClientApp | str,
    predict: PredictFn,
    num_nodes: int,
    backend: str,
    backend_options: Mapping[str, object] | None,
    run_config: UserConfig | None,
    node_config_fn: NodeConfigFn,
    app_dir: str | Path | None,
    out_dir: str | Path | None,
    observers: Sequence[RunObserver],
    status: StatusFn | None,
    population: PopulationModel | None,
) -> Comparison:
    """``run_comparison`` without a view of its own."""
    config: dict[str, UserConfigValue] = dict(run_config or {})
    out_root = Path(out_dir) if out_dir is not None else None
    score = _Scorer(predict, config)

    def simulate(
        app: ServerApp,
        runner: Backend,
        out: Path | None,
        watchers: Sequence[RunObserver],
        clock: PopulationModel | None = None,
    ) -> None:
        run_simulation(
            app,
            client_app,
            num_nodes=num_nodes,
            backend=runner,
            run_config=config,
            node_config_fn=node_config_fn,
            app_dir=app_dir,
            out_dir=out,
            observers=watchers,
            population=clock,
            verbose=False,  # the caller watches through observers and status
        )

    def new_backend() -> Backend:
        return make_backend(backend, **(backend_options or {}))

    federated = _FederatedWatch(score)
    recorder = _Recorder(new_backend())
    federated_out = out_root / FEDERATED_DIR if out_root is not None else None
    simulate(server_app, recorder, federated_out, [*observers, federated, recorder], population)
    initial, federated_run = federated.finished()
    isolated = _IsolatedTraining(
        score, initial, federated_run.curve[0], recorder.trained, status or (lambda text: None)
    )
    simulate(isolated.app(), new_backend(), None, ())
    if out_root is not None:
        for run in isolated.runs:
            save_arrays(run.arrays, out_root / ISOLATED_DIR / f"partition-{run.partition}.npz")
    return Comparison(
        models=(*isolated.runs, federated_run),
        label_counts=isolated.label_counts,
        num_rounds=federated_run.rounds_trained,
    )


def _both(first: StatusFn | None, second: StatusFn) -> StatusFn:
    """A status function that tells ``first`` (if any), then ``second``."""

    def hear(text: str) -> None:
        if first is not None:
            first(text)
        second(text)

    return hear


class _Scorer:
    """Calls ``predict`` and checks that every model is scored on the same test labels."""

    def __init__(self, predict: PredictFn, run_config: Mapping[str, UserConfigValue]) -> None:
        self.predict = predict
        self.run_config = run_config
        self.labels: np.ndarray | None = None

    def __call__(self, arrays: ArrayRecord) -> Predictions:
        predictions = call_predict(self.predict, arrays, self.run_config)
        if self.labels is None:
            self.labels = predictions.labels
        elif not np.array_equal(predictions.labels, self.labels):
            raise AppError(
                "the predict function returned different test labels for different models: "
                "it must score every model on the same test set, in the same order (no "
                "shuffling)"
            )
        return predictions


class _FederatedWatch(RunObserver):
    """Scores the federated run's global model after every round (round 0: the initial one)."""

    def __init__(self, score: _Scorer) -> None:
        self.score = score
        self.initial: ArrayRecord | None = None
        self.final: tuple[ArrayRecord, Predictions] | None = None
        self.curve: list[RoundScore] = []

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Score this round's global model."""
        if self.curve and server_round <= self.curve[-1].server_round:
            raise AppError(
                f"the ServerApp reported round {server_round} after round "
                f"{self.curve[-1].server_round}: pollinate compare needs one sequence of "
                "rounds (call strategy.start once)"
            )
        if server_round == 0:
            self.initial = arrays
        predictions = self.score(arrays)
        self.curve.append(RoundScore.of(server_round, predictions))
        self.final = (arrays, predictions)

    def finished(self) -> tuple[ArrayRecord, ModelRun]:
        """The initial model and the federated model's run; an AppError if rounds are missing."""
        if self.initial is None or self.final is None or len(self.curve) < 2:
            raise AppError(
                "pollinate compare needs the ServerApp to report its initial model and each "
                "round's model: run the rounds with strategy.start(...), or call "
                "grid.observer.on_arrays(server_round, arrays) from your own loop "
                "(round 0 for the initial model)"
            )
        arrays, predictions = self.final
        rounds = self.curve[-1].server_round
        return self.initial, ModelRun(
            "federated", None, tuple(self.curve), predictions, arrays, rounds
        )


@dataclass(frozen=True, slots=True)
class _Sent:
    """A train message as the federated run sent it: its type and its config."""

    message_type: str
    config: ConfigRecord


class _Recorder(Backend, RunObserver):
    """Wraps a backend: notes which node got a train message in which round, and its config."""

    name = "recording"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.server_round = 0
        self.trained: dict[int, dict[int, _Sent]] = {}
        """``{server_round: {node_id: what it was sent}}``."""

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Train messages from now on belong to ``server_round``."""
        self.server_round = server_round

    def start(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Start the wrapped backend."""
        self.inner.start(app, num_nodes)

    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Note the train tasks, then run everything on the wrapped backend."""
        for task in tasks:
            metadata = task.message.metadata
            if metadata.message_type.partition(".")[0] != MessageType.TRAIN:
                continue
            found = task.message.content.get(CONFIG_KEY)
            config = ConfigRecord(found) if isinstance(found, ConfigRecord) else ConfigRecord()
            stated = config.get("server-round")  # what Strategy.start sends; else the observer's
            server_round = stated if isinstance(stated, int) else self.server_round
            sent = _Sent(metadata.message_type, config)
            self.trained.setdefault(server_round, {})[metadata.dst_node_id] = sent
        return self.inner.run(tasks, deadline)

    def close(self) -> None:
        """Close the wrapped backend."""
        self.inner.close()


class _IsolatedTraining:
    """A ServerApp that replays each node's federated training on its own model, alone."""

    def __init__(
        self,
        score: _Scorer,
        initial: ArrayRecord,
        initial_score: RoundScore,
        trained: dict[int, dict[int, _Sent]],
        status: StatusFn,
    ) -> None:
        self.score = score
        self.initial = initial
        self.initial_score = initial_score
        self.trained = trained
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
        self.label_counts = _ask_label_counts(grid, nodes)
        models = dict.fromkeys(nodes, self.initial)
        finals: dict[int, Predictions] = {}
        curves: dict[int, list[RoundScore]] = {node: [self.initial_score] for node in nodes}
        rounds = sorted(r for r in self.trained if r > 0)
        for server_round in rounds:
            sent = self.trained[server_round]
            self.status(
                f"round {server_round}/{rounds[-1]}: training {len(sent)} isolated "
                f"model{'s' if len(sent) != 1 else ''}"
            )
            models.update(self._round(grid, server_round, models, sent))
            for node in sent:
                finals[node] = self.score(models[node])
                curves[node].append(RoundScore.of(server_round, finals[node]))
        self.runs = [
            ModelRun(
                f"isolated-{node - 1}",
                node - 1,
                tuple(curves[node]),
                finals[node] if node in finals else self.score(self.initial),
                models[node],
                len(curves[node]) - 1,
            )
            for node in nodes
        ]

    def _round(
        self,
        grid: Grid,
        server_round: int,
        models: dict[int, ArrayRecord],
        sent: dict[int, _Sent],
    ) -> dict[int, ArrayRecord]:
        # Each message gets its own records, so a node that edits its content in place
        # cannot change another node's model.
        messages = [
            Message.create(
                RecordDict(
                    {ARRAYS_KEY: ArrayRecord(models[node]), CONFIG_KEY: ConfigRecord(s.config)}
                ),
                node,
                s.message_type,
                run_id=grid.run_id,
            )
            for node, s in sent.items()
        ]
        trained = {}
        for reply in grid.send_and_receive(messages, timeout_s=ROUND_TIMEOUT_S):
            node = reply.metadata.src_node_id
            arrays = reply.content.get(ARRAYS_KEY) if reply.error is None else None
            problem = (
                reply.error.reason
                if reply.error is not None
                else f"its reply has no ArrayRecord under {ARRAYS_KEY!r}"
                if not isinstance(arrays, ArrayRecord)
                else check_arrays(arrays, models[node])
            )
            if problem is not None or not isinstance(arrays, ArrayRecord):
                raise RoundError(
                    f"isolated training of partition {node - 1} failed in round "
                    f"{server_round}: {problem}"
                )
            trained[node] = arrays
        return trained


def _ask_label_counts(grid: Grid, nodes: list[int]) -> dict[int, dict[int, int]] | None:
    """Each partition's label counts, or None when the ClientApp cannot tell them."""
    messages = [
        Message.create(RecordDict(), node, LABEL_COUNTS, run_id=grid.run_id) for node in nodes
    ]
    counts = {
        reply.metadata.src_node_id - 1: read_label_counts(reply)
        for reply in grid.send_and_receive(messages, timeout_s=ROUND_TIMEOUT_S)
    }
    if any(c is None for c in counts.values()):
        return None
    return {partition: c for partition, c in sorted(counts.items()) if c is not None}
