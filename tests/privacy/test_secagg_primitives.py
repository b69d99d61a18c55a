"""SecAgg+'s building blocks: Shamir sharing, the crypto, quantization, graph, parameters."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollinate.errors import ConfigError
from pollinate.privacy import SecAggError, SecAggPlus
from pollinate.privacy._secagg import _crypto, _shamir
from pollinate.privacy._secagg._graph import neighbours
from pollinate.privacy._secagg._params import Params, RoundParams
from pollinate.privacy._secagg._quantize import quantize, step


@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=64),
    threshold=st.integers(1, 6),
    extra=st.integers(0, 4),
    data=st.data(),
)
def test_any_threshold_shares_rebuild_the_secret(secret, threshold, extra, data):
    holders = data.draw(
        st.lists(
            st.integers(1, 2**53),
            min_size=threshold + extra,
            max_size=threshold + extra,
            unique=True,
        )
    )
    shares = _shamir.split(secret, threshold, holders)
    chosen = data.draw(st.permutations(holders))[:threshold]
    assert _shamir.combine({x: shares[x] for x in chosen}, threshold, len(secret))[0] == secret


def test_fewer_than_threshold_shares_fit_every_secret():
    """The Shamir property: t - 1 shares are consistent with ANY secret, so they reveal none.

    For each candidate secret there is a t-th share value that, with the t - 1 real shares,
    rebuilds exactly that candidate: the server's view of t - 1 shares cannot tell them apart.
    """
    secret, threshold, holders = b"\x07" * 32, 4, [3, 5, 8, 13, 21]
    shares = _shamir.split(secret, threshold, holders)
    seen = {x: shares[x] for x in holders[: threshold - 1]}
    for candidate in (bytes(32), b"\xff" * 32, secret):
        forged = _completing_share(seen, holders[threshold - 1], candidate)
        rebuilt = _shamir.combine({**seen, holders[threshold - 1]: forged}, threshold, 32)[0]
        assert rebuilt == candidate
    with pytest.raises(ValueError, match="cannot rebuild"):
        _shamir.combine(seen, threshold, 32)[0]


def _completing_share(seen, x_last, candidate):
    """The share at ``x_last`` that makes ``seen`` rebuild ``candidate`` (Lagrange at 0)."""
    p = _shamir.PRIME
    xs = [*seen, x_last]

    def basis_at_zero(xi):
        num, den = 1, 1
        for xj in xs:
            if xj != xi:
                num, den = num * xj % p, den * (xj - xi) % p
        return num * pow(den, -1, p) % p

    known = sum(int.from_bytes(y, "big") * basis_at_zero(x) for x, y in seen.items()) % p
    value = (int.from_bytes(candidate, "big") - known) * pow(basis_at_zero(x_last), -1, p) % p
    return value.to_bytes(_shamir.SHARE_BYTES, "big")


def test_pairwise_keys_agree_and_depend_on_label_and_salt():
    sk_a, pk_a = _crypto.key_pair()
    sk_b, pk_b = _crypto.key_pair()
    ab = _crypto.agree(sk_a, pk_b, b"session", b"label")
    assert ab == _crypto.agree(sk_b, pk_a, b"session", b"label")
    assert ab != _crypto.agree(sk_a, pk_b, b"session", b"other label")
    assert ab != _crypto.agree(sk_a, pk_b, b"other session", b"label")


def test_a_sealed_share_refuses_tampering_and_other_bindings():
    key = bytes(range(32))
    sealed = _crypto.seal(key, b"share", b"bound")
    assert _crypto.open_sealed(key, sealed, b"bound", "x") == b"share"
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for box, bound in ((flipped, b"bound"), (sealed, b"other round")):
        with pytest.raises(SecAggError, match="failed authentication"):
            _crypto.open_sealed(key, box, bound, "the share")


def test_the_prg_is_deterministic_per_seed_and_differs_across_seeds():
    a = _crypto.expand(bytes(32), 1000, np.dtype(np.uint64))
    assert np.array_equal(a, _crypto.expand(bytes(32), 1000, np.dtype(np.uint64)))
    assert not np.array_equal(a, _crypto.expand(b"\x01" * 32, 1000, np.dtype(np.uint64)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stochastic_rounding_is_within_one_step_and_unbiased(seed):
    rng = np.random.default_rng(seed)
    clip, levels = 2.0, 2**10
    values = rng.uniform(-clip, clip, 200_000)
    q = quantize(values, clip, levels, rng, np.dtype(np.uint64))
    back = q * step(clip, levels) - clip
    assert np.max(np.abs(back - values)) < step(clip, levels)
    assert abs(np.mean(back - values)) < step(clip, levels) / 100  # unbiased on average
    assert q.max() <= levels - 1


def test_the_graph_gives_each_node_num_shares_minus_one_neighbours_symmetrically():
    nodes = list(range(1, 41))
    graph = neighbours(nodes, 9, seed=3)
    for node, near in graph.items():
        assert len(near) == 8 and node not in near
        assert all(node in graph[other] for other in near)
    assert graph == neighbours(nodes, 9, seed=3)
    assert graph != neighbours(nodes, 9, seed=4)
    assert neighbours([1, 2, 3], 5, seed=0) == {1: [2, 3], 2: [1, 3], 3: [1, 2]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_shares": 4, "reconstruction_threshold": 3}, "odd int"),
        ({"num_shares": 1, "reconstruction_threshold": 1}, "odd int"),
        ({"num_shares": 7, "reconstruction_threshold": 3}, "too low"),
        ({"num_shares": 7, "reconstruction_threshold": 8}, "more than num_shares"),
        ({"num_shares": 0.5, "reconstruction_threshold": 0.4}, r"\(0.5, 1\]"),
        ({"num_shares": 7, "reconstruction_threshold": 4, "modulus_range": 1000}, "power of two"),
        (
            {"num_shares": 7, "reconstruction_threshold": 4, "quantization_range": 2**64},
            "quantization",
        ),
        ({"num_shares": 7, "reconstruction_threshold": 4, "clipping_range": 0.0}, "clipping"),
        ({"num_shares": 7, "reconstruction_threshold": 4, "max_weight": 0.5}, "max_weight"),
    ],
)
def test_unsafe_parameters_are_refused_when_built(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SecAggPlus(**kwargs)


def test_a_sum_that_could_overflow_the_modulus_is_refused():
    params = Params(5, 3, max_weight=1000, quantization_range=2**22, modulus_range=2**32)
    with pytest.raises(ConfigError, match=r"overflow.*raise modulus_range"):
        RoundParams.resolve(params, 100, weighted=True)
    assert RoundParams.resolve(params, 100, weighted=False).weight_cap == 1


def test_fractions_resolve_per_round():
    resolved = RoundParams.resolve(Params(0.2, 0.6), 100, weighted=True)
    assert (resolved.num_shares, resolved.threshold) == (21, 13)
    with pytest.raises(ConfigError, match="needs rounds of at least 17 nodes"):
        RoundParams.resolve(Params(17, 9), 10, weighted=True)
