import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from pollinate import frameworks  # noqa: E402
from pollinate.errors import RecordError  # noqa: E402


def _params() -> dict[str, object]:
    return {
        "dense": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)},
        "layers": [jnp.full(2, 2.0), (jnp.arange(3.0),)],
    }


def test_names_are_key_paths_in_flattening_order():
    arrays = frameworks.jax.to_arrays(_params())
    assert list(arrays) == ["dense.b", "dense.w", "layers.0", "layers.1.0"]


def test_round_trip_gives_the_same_structure_and_values():
    params = _params()
    back = frameworks.jax.load_arrays(params, frameworks.jax.to_arrays(params))
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert isinstance(b, jax.Array)


def test_load_takes_a_shape_only_structure():
    shapes = jax.eval_shape(_params)
    back = frameworks.jax.load_arrays(shapes, frameworks.jax.to_arrays(_params()))
    np.testing.assert_array_equal(np.asarray(back["dense"]["w"]), np.ones((2, 3)))


def test_load_names_a_wrong_shape():
    arrays = frameworks.jax.to_arrays(_params())
    arrays["dense.b"] = np.zeros(4, np.float32)
    with pytest.raises(RecordError, match=r"'dense.b'\] has shape \(4,\).*needs \(3,\)"):
        frameworks.jax.load_arrays(_params(), arrays)
