"""The accountant reports what dp-accounting computes directly, and calibration inverts it."""

import sys

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from pollinate.errors import ConfigError
from pollinate.privacy import calibrate_noise_multiplier, epsilon


def _direct(q, z, rounds, delta, accountant):
    ledger = pld.PLDAccountant() if accountant == "pld" else rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    ledger.compose(event, rounds)
    return ledger.get_epsilon(delta)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize(
    ("q", "z", "rounds", "delta"),
    [(0.01, 1.1, 100, 1e-5), (0.1, 1.0, 20, 1e-5), (0.5, 2.0, 7, 1e-6), (0.001, 0.8, 1000, 1e-5)],
)
def test_epsilon_equals_dp_accounting_computed_directly(q, z, rounds, delta, accountant):
    ours = epsilon([(q, z)] * rounds, delta, accountant)
    assert ours == pytest.approx(_direct(q, z, rounds, delta, accountant), rel=1e-9)


def test_rounds_of_different_kinds_compose_as_one_ledger_would():
    ledger = pld.PLDAccountant()
    for q, z in [(0.1, 1.0), (0.1, 1.0), (0.2, 1.5), (0.1, 1.0)]:
        ledger.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)))
    rounds = [(0.1, 1.0), (0.1, 1.0), (0.2, 1.5), (0.1, 1.0)]
    assert epsilon(rounds, 1e-5) == pytest.approx(ledger.get_epsilon(1e-5), rel=1e-6)


def test_full_participation_is_the_plain_gaussian_mechanism_and_no_rounds_cost_nothing():
    ledger = pld.PLDAccountant()
    ledger.compose(dp_accounting.GaussianDpEvent(2.0), 5)
    assert epsilon([(1.0, 2.0)] * 5, 1e-5) == pytest.approx(ledger.get_epsilon(1e-5))
    assert epsilon([], 1e-5) == 0.0


@pytest.mark.parametrize(
    ("target", "q", "rounds", "accountant"),
    [
        (1.0, 0.01, 100, "rdp"),
        (3.0, 0.1, 50, "rdp"),
        (8.0, 0.1, 30, "rdp"),
        (3.0, 0.1, 50, "pld"),  # the default's bisection is the same; one case (5 s) covers it
    ],
)
def test_calibration_inverts_the_accountant(target, q, rounds, accountant):
    z = calibrate_noise_multiplier(target, 1e-5, q, rounds, accountant)
    assert epsilon([(q, z)] * rounds, 1e-5, accountant) <= target
    # A hair less noise (0.2%) already spends more than the target: the least z, to 0.1%.
    assert epsilon([(q, z * 0.998)] * rounds, 1e-5, accountant) > target * 0.99


def test_an_unreachable_target_is_one_clear_error():
    with pytest.raises(ConfigError, match="cannot be reached in 1000 rounds"):
        calibrate_noise_multiplier(1e-6, 1e-5, 1.0, 1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accountant": "prv"}, "accountant must be one of pld, rdp"),
        ({"delta": 1.5}, "delta must be between 0 and 1"),
        ({"target_epsilon": -1.0}, "target_epsilon must be positive"),
    ],
)
def test_bad_calibration_arguments_are_refused(kwargs, message):
    args = {"target_epsilon": 3.0, "delta": 1e-5, "sampling_rate": 0.1, "num_rounds": 10}
    with pytest.raises(ConfigError, match=message):
        calibrate_noise_multiplier(**{**args, **kwargs})


def test_without_dp_accounting_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    with pytest.raises(ConfigError, match=r"pip install 'pollinate\[privacy\]'"):
        epsilon([(0.3, 1.234567)], 1e-5)


@pytest.mark.parametrize("z", [0.3, 0.05, 1e-9])
def test_a_tiny_noise_multiplier_gives_a_large_finite_bound_without_a_huge_grid(z):
    # dp-accounting's default PLD grid would need 1 / z^2 points (38 GiB at z = 1e-3).
    spent = epsilon([(0.5, z)] * 3, 1e-5)
    assert 1.0 < spent < float("inf")


class _PldCalls:
    """Counts dp-accounting's PLD constructions and compositions."""

    def __init__(self, monkeypatch):
        self.made = self.composed = self.self_composed = 0
        module = pld.privacy_loss_distribution
        cls = module.PrivacyLossDistribution
        made, compose, self_compose = (
            module.from_gaussian_mechanism,
            cls.compose,
            cls.self_compose,
        )

        def counted_made(*args, **kwargs):
            self.made += 1
            return made(*args, **kwargs)

        def counted_compose(pld_self, *args, **kwargs):
            self.composed += 1
            return compose(pld_self, *args, **kwargs)

        def counted_self_compose(pld_self, *args, **kwargs):
            self.self_composed += 1
            return self_compose(pld_self, *args, **kwargs)

        monkeypatch.setattr(module, "from_gaussian_mechanism", counted_made)
        monkeypatch.setattr(cls, "compose", counted_compose)
        monkeypatch.setattr(cls, "self_compose", counted_self_compose)


def test_a_constant_run_costs_one_composition_a_round_not_a_recount(monkeypatch):
    calls = _PldCalls(monkeypatch)
    q, z = 0.0123, 1.0  # a rate no other test uses: nothing cached before
    history = []
    for _ in range(30):
        history.append((q, z))
        epsilon(history, 1e-5)
    assert calls.made == 1  # the one-round PLD is built once, not each round
    assert calls.self_composed == 0
    assert calls.composed <= 30  # one more round, one composition
    assert epsilon(history, 1e-5) == pytest.approx(_direct(q, z, 30, 1e-5, "pld"), rel=1e-9)


def test_interleaved_rates_compose_by_kind_and_each_round_still_costs_one(monkeypatch):
    calls = _PldCalls(monkeypatch)
    history, spent = [], 0.0
    for t in range(1, 21):
        history.append((0.0231 if t % 2 else 0.0462, 1.0))
        now = epsilon(history, 1e-5)
        assert now >= spent
        spent = now
    assert calls.made == 2
    assert calls.self_composed == 0
    assert calls.composed <= 2 * 20  # one round's composition, one to join the two kinds


@pytest.mark.parametrize(
    ("target", "q", "rounds"), [(50.0, 0.1, 10), (60.0, 0.5, 5), (12.0, 0.01, 100)]
)
def test_calibration_finds_the_least_noise_below_one_half_too(target, q, rounds):
    # The bisection is the same for both accountants; RDP keeps this test to a second.
    z = calibrate_noise_multiplier(target, 1e-5, q, rounds, "rdp")
    assert z < 0.5
    assert epsilon([(q, z)] * rounds, 1e-5, "rdp") <= target
    assert epsilon([(q, z * 0.998)] * rounds, 1e-5, "rdp") > target * 0.99


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: epsilon([(-0.1, 1.0)], 1e-5), r"sampling rate must be in \(0, 1\].*got -0.1"),
        (lambda: epsilon([(1.5, 1.0)], 1e-5), r"sampling rate must be in \(0, 1\].*got 1.5"),
        (lambda: epsilon([(0.1, -1.0)], 1e-5), "noise multiplier must be 0 or more"),
        (lambda: epsilon([(0.1, float("nan"))], 1e-5), "noise multiplier must be 0 or more"),
        (lambda: epsilon([(0.1, 1.0)], 0.0), "delta must be between 0 and 1"),
        (lambda: calibrate_noise_multiplier(3.0, 1e-5, 0.0, 10), r"sampling_rate must be in"),
        (lambda: calibrate_noise_multiplier(3.0, 1e-5, 2.0, 10), r"sampling_rate must be in"),
        (lambda: calibrate_noise_multiplier(3.0, 1e-5, 0.1, 0), "num_rounds must be a whole"),
        (lambda: calibrate_noise_multiplier(3.0, 1e-5, 0.1, 2.5), "num_rounds must be a whole"),
    ],
)
def test_the_public_functions_refuse_bad_figures_with_one_clear_error(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_numpy_scalars_are_numbers_to_the_public_functions():
    # RDP: the scalars take the same path in both accountants, and RDP is 3 s faster here
    z = calibrate_noise_multiplier(
        np.float32(3.0), np.float64(1e-5), np.float32(0.5), np.int64(5), "rdp"
    )
    assert epsilon([(np.float32(0.5), np.float64(z))] * 5, np.float64(1e-5), "rdp") <= 3.0


def test_rdp_orders_that_do_not_converge_are_dropped_without_absl_warnings(caplog):
    import logging

    direct = _rdp_directly(0.1, 1.0, 3, 1e-5)  # dp-accounting itself warns, 5 times
    caplog.set_level(logging.WARNING, logger="absl")
    caplog.clear()
    assert epsilon([(0.1, 1.0)] * 3, 1e-5, accountant="rdp") == pytest.approx(direct)
    assert not [r for r in caplog.records if "failed to converge" in r.getMessage()]
    logging.getLogger("absl").warning("a real problem")  # the logger is not silenced after
    assert "a real problem" in caplog.text


def _rdp_directly(q, z, rounds, delta):
    ledger = rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    ledger.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return ledger.get_epsilon(delta)
