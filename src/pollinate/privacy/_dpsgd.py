"""Sample-level DP-SGD on a node with Opacus, its accountant kept in ``context.state``.

Each round a node builds its model afresh (in simulation the node itself is made anew for
every message), so the privacy it has spent cannot live in a Python object: ``DpSgd`` keeps
the accountant's history, ``(noise multiplier, sampling rate, steps)`` triples, in
``context.state["privacy.dpsgd"]``, restores it into a new Opacus ``PrivacyEngine`` each
round and writes it back after every optimizer step. The node's cumulative epsilon at its
delta is then ``epsilon``, and ``metrics()`` gives the reply metrics
``privacy.node-epsilon`` and ``privacy.node-delta``.

Opacus is imported only when a ``DpSgd`` is used: ``pip install 'pollinate[privacy]'``.
"""

from __future__ import annotations

import functools
import math
import secrets
import warnings
from typing import TYPE_CHECKING, Any

from ..context import Context
from ..errors import ConfigError
from ..records import ConfigRecord

if TYPE_CHECKING:
    import torch

__all__ = ["DPSGD_STATE_KEY", "NODE_DELTA_KEY", "NODE_EPSILON_KEY", "DpSgd"]

DPSGD_STATE_KEY = "privacy.dpsgd"
"""``context.state`` key of a node's DP-SGD accountant history."""
NODE_EPSILON_KEY = "privacy.node-epsilon"
"""Reply metric: the node's own cumulative epsilon."""
NODE_DELTA_KEY = "privacy.node-delta"
"""Reply metric: the delta that epsilon holds at."""
ACCOUNTANTS = ("rdp", "prv")
"""Opacus accountants a history can be accounted with."""

_History = list[tuple[float, float, int]]
_INSTALL = "pip install 'pollinate[privacy]'"


class DpSgd:
    """Make a node's PyTorch training differentially private per example, across rounds.

    ::

        @app.train()
        def train(msg, context):
            model = Net()
            frameworks.torch.load_arrays(model, msg.content.arrays())
            dp = DpSgd(context, max_grad_norm=1.0, noise_multiplier=1.1, delta=1e-5)
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            private_model, optimizer, loader = dp.make_private(model, optimizer, loader)
            ...  # train private_model with optimizer on loader's (Poisson-sampled) batches
            metrics = MetricRecord({"num-examples": n, **dp.metrics()})
            return msg.reply(RecordDict({"arrays": frameworks.torch.to_arrays(model), ...}))

    ``model`` holds the trained weights (the wrapped model shares its parameters). Give
    either ``noise_multiplier`` or ``target_epsilon`` with ``planned_epochs``, the local
    epochs the node may train in the whole run (rounds x local epochs): the noise is then
    calibrated so that those epochs (``planned_epochs x len(loader)`` steps) spend at most
    ``target_epsilon``, and a step past them raises a ConfigError before the update is
    applied, so the node's model never carries more than its budget (the plan assumes the
    node's data, so its sampling rate, stays the same through the run).

    Args:
        context: the node's context; its ``state`` keeps the accountant's history.
        max_grad_norm: the per-example gradient clip (L2), > 0.
        delta: the delta the node's epsilon holds at, in (0, 1).
        noise_multiplier: the noise's standard deviation over ``max_grad_norm``, > 0.
        target_epsilon: the node's budget for the whole run, instead of a noise multiplier.
        planned_epochs: with ``target_epsilon``: the local epochs it must cover.
        accountant: ``"rdp"`` (default) or ``"prv"``, Opacus's accountants.
        seed: seeds the noise, for reproducible simulations; None (deployed): torch's
            generator seeded from the OS, never torch's global one, which apps seed.
        secure_mode: Opacus's secure mode. It needs ``torchcsprng``, which does not support
            torch 2.x (its last release, 0.2.1 of 2021, targets torch 1.x), so leave it off:
            the noise then comes from torch's PRNG, with the floating-point caveat of
            docs/dp-sgd.md, "Noise source".
    """

    def __init__(
        self,
        context: Context,
        *,
        max_grad_norm: float,
        delta: float,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        planned_epochs: int | None = None,
        accountant: str = "rdp",
        seed: int | None = None,
        secure_mode: bool = False,
    ) -> None:
        _check_positive("max_grad_norm", max_grad_norm)
        if not (isinstance(delta, (int, float)) and 0 < delta < 1):
            raise ConfigError(f"delta must be a number in (0, 1), got {delta!r}: 1e-5 is usual")
        _check_noise(noise_multiplier, target_epsilon, planned_epochs)
        if accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"unknown accountant {accountant!r}; choose one of: {', '.join(ACCOUNTANTS)}"
            )
        if secure_mode and seed is not None:
            raise ConfigError("secure_mode draws noise from the OS: give no seed with it")
        self._context = context
        self.max_grad_norm = float(max_grad_norm)
        self.delta = float(delta)
        self.target_epsilon = target_epsilon
        self.planned_epochs = planned_epochs
        self.accountant = accountant
        self._seed = seed
        self._secure_mode = secure_mode
        self.noise_multiplier = noise_multiplier
        self.sample_rate: float | None = None

    @property
    def history(self) -> _History:
        """The accountant's history so far: ``(noise multiplier, sampling rate, steps)``."""
        return _load_history(self._context.state.get(DPSGD_STATE_KEY))

    @property
    def epsilon(self) -> float:
        """The node's epsilon at ``delta``, over every DP-SGD step it took in this run."""
        history = self.history
        if not history:
            return 0.0
        accountant = _opacus().accountants.create_accountant(mechanism=self.accountant)
        accountant.history = history
        return float(accountant.get_epsilon(delta=self.delta))

    def metrics(self) -> dict[str, float]:
        """``privacy.node-epsilon`` and ``privacy.node-delta``, for the reply's metrics."""
        return {NODE_EPSILON_KEY: self.epsilon, NODE_DELTA_KEY: self.delta}

    def make_private(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: torch.utils.data.DataLoader[Any],
    ) -> tuple[torch.nn.Module, Any, torch.utils.data.DataLoader[Any]]:
        """Opacus's private model, optimizer and Poisson-sampled loader for this round.

        Every step of the returned optimizer is added to the history in ``context.state``.
        A model Opacus cannot train per example (BatchNorm, say) is one ConfigError.
        """
        opacus = _opacus()
        _check_compatible(opacus, model)
        if len(data_loader) == 0:
            raise ConfigError("the data loader is empty: DP-SGD needs at least one example")
        self.sample_rate = 1 / len(data_loader)
        planned_steps = None
        if self.target_epsilon is not None and self.planned_epochs is not None:
            planned_steps = self.planned_epochs * len(data_loader)
            self._check_budget(planned_steps)
            self.noise_multiplier = self._calibrated(
                self.target_epsilon, self.sample_rate, planned_steps
            )
        engine = self._engine(opacus)
        engine.accountant.history = self.history
        generator = None
        if not self._secure_mode:  # where the noise is drawn: on the parameters' device
            import torch

            device = next(model.parameters()).device
            seed = secrets.randbits(63) if self._seed is None else self._seed
            generator = torch.Generator(device=device).manual_seed(seed)
        private_model, private_optimizer, loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=data_loader,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            noise_generator=generator,
        )
        account = private_optimizer.step_hook

        def account_and_keep(step_optimizer: Any) -> None:
            if planned_steps is not None:  # refuse the step before the update is applied
                self._check_budget(planned_steps)
            account(step_optimizer)
            self._context.state[DPSGD_STATE_KEY] = _history_record(engine.accountant.history)

        private_optimizer.attach_step_hook(account_and_keep)
        return private_model, private_optimizer, loader

    def _engine(self, opacus: Any) -> Any:
        """A new PrivacyEngine; secure_mode without torchcsprng is one ConfigError."""
        with warnings.catch_warnings():  # Opacus warns whenever secure_mode is off
            warnings.filterwarnings("ignore", "Secure RNG turned off")
            try:
                return opacus.PrivacyEngine(
                    accountant=self.accountant, secure_mode=self._secure_mode
                )
            except ImportError:
                raise ConfigError(
                    "secure_mode needs torchcsprng, which does not support torch 2.x (its "
                    "last release, 0.2.1 of 2021, targets torch 1.x): use secure_mode=False, "
                    "where the noise comes from torch's generator seeded from the OS "
                    '(docs/dp-sgd.md, "Noise source")'
                ) from None

    def _calibrated(self, target_epsilon: float, sample_rate: float, steps: int) -> float:
        """The noise multiplier that spends at most ``target_epsilon`` in ``steps`` steps."""
        try:
            return _calibrate(target_epsilon, self.delta, sample_rate, steps, self.accountant)
        except ValueError as err:  # "The privacy budget is too low."
            raise ConfigError(
                f"no noise multiplier keeps epsilon at {target_epsilon} over "
                f"{self.planned_epochs} epochs at sampling rate {sample_rate:.4g} ({err}): "
                "raise target_epsilon or the batch size, or plan fewer epochs"
            ) from None

    def _check_budget(self, planned_steps: int) -> None:
        """A ConfigError once the node has taken the steps its budget was planned for."""
        taken = sum(steps for _, _, steps in self.history)
        if taken >= planned_steps:
            raise ConfigError(
                f"this node has spent its privacy budget (epsilon {self.epsilon:.4g} of "
                f"{self.target_epsilon}, delta {self.delta:g}, {taken} of {planned_steps} "
                "planned steps): it trains no more in this run; plan more epochs or a larger "
                "target_epsilon for the next run"
            )


@functools.lru_cache(maxsize=64)
def _calibrate(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Opacus's search for the noise, once per process for each plan (it takes a second)."""
    with warnings.catch_warnings():  # the search tries noise far outside the bound's range
        warnings.filterwarnings("ignore", "Optimal order is the")
        noise = _opacus().accountants.utils.get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
        )
    return float(noise)


def _check_positive(name: str, value: float | None) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


def _check_noise(
    noise_multiplier: float | None, target_epsilon: float | None, planned_epochs: int | None
) -> None:
    """Exactly one of a noise multiplier or a target epsilon (with its planned epochs)."""
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ConfigError("give either noise_multiplier or target_epsilon (with planned_epochs)")
    if noise_multiplier is not None:
        _check_positive("noise_multiplier", noise_multiplier)
        return
    _check_positive("target_epsilon", target_epsilon)
    if not (isinstance(planned_epochs, int) and planned_epochs >= 1):
        raise ConfigError(
            f"target_epsilon needs planned_epochs, the local epochs the node may train in the "
            f"whole run (rounds x local epochs), an int >= 1; got {planned_epochs!r}"
        )


def _check_compatible(opacus: Any, model: torch.nn.Module) -> None:
    """One short ConfigError naming the layers Opacus cannot train per example, and the fix."""
    validator = opacus.validators.ModuleValidator
    errors = validator.validate(model, strict=False)
    if errors:
        layers = [
            f"{name or 'the model'} ({type(module).__name__})"
            for name, module in model.named_modules()
            if type(module) in validator.VALIDATORS and validator.VALIDATORS[type(module)](module)
        ]
        what = (
            f"layer{'s' if len(layers) > 1 else ''} {', '.join(layers)}"
            if layers
            else str(errors[0]).strip().split(". ")[0]
        )
        raise ConfigError(
            f"Opacus cannot train this model per example ({what}): fix it with "
            "model = opacus.validators.ModuleValidator.fix(model) (BatchNorm becomes "
            "GroupNorm), for the server's initial model too, before building the optimizer"
        )


def _history_record(history: _History) -> ConfigRecord:
    return ConfigRecord(
        {
            "noise-multipliers": [float(h[0]) for h in history],
            "sample-rates": [float(h[1]) for h in history],
            "steps": [int(h[2]) for h in history],
        }
    )


def _load_history(record: object) -> _History:
    if record is None:
        return []
    lists = (
        [record.get(k) for k in ("noise-multipliers", "sample-rates", "steps")]
        if isinstance(record, ConfigRecord)
        else []
    )
    if (
        len(lists) != 3
        or not all(isinstance(v, list) for v in lists)
        or len({len(v) for v in lists}) != 1
    ):
        raise ConfigError(
            f"context.state[{DPSGD_STATE_KEY!r}] is not a DP-SGD history (lists "
            "noise-multipliers, sample-rates and steps of one length): leave that key to DpSgd"
        )
    noise, rates, steps = lists
    return [(float(n), float(r), int(s)) for n, r, s in zip(noise, rates, steps, strict=True)]


def _opacus() -> Any:
    """Opacus and the submodules used here, imported on first use."""
    try:
        import opacus  # type: ignore[import-untyped]
        import opacus.accountants.utils  # type: ignore[import-untyped]
        import opacus.validators  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(f"DP-SGD needs Opacus: {_INSTALL}") from None
    return opacus
