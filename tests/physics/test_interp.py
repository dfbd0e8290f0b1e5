"""Tensor-product interpolation: the rules the look-up table relies on."""

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from s2ac.physics.interp import Axis, contract


def test_linear_axes_match_scipy_multilinear():
    rng = np.random.default_rng(0)
    axes = [Axis("a", (0.0, 1.0, 3.0), "1"), Axis("b", (-2.0, 0.0, 5.0, 6.0), "deg")]
    values = rng.normal(size=(2, 3, 4))  # a leading "band" axis is kept
    reference = RegularGridInterpolator(
        [np.array(a.nodes) for a in axes], np.moveaxis(values, 0, -1)
    )
    for point in [(0.5, -1.0), (2.9, 5.5), (0.0, 6.0), (3.0, -2.0)]:
        weights = [axis.weights(x) for axis, x in zip(axes, point, strict=True)]
        np.testing.assert_allclose(
            contract(values, weights), reference(np.array([point]))[0], atol=1e-12
        )


def test_cubic_axis_reproduces_cubic_polynomials_in_transformed_coordinate():
    axis = Axis("zenith", (0.0, 20.0, 40.0, 55.0, 70.0), "deg", "sec", "cubic")
    sec = 1 / np.cos(np.radians(np.array(axis.nodes)))
    nodes_values = 0.3 + 0.2 * sec - 0.05 * sec**3
    for x in (5.0, 33.3, 61.0):
        s = 1 / np.cos(np.radians(x))
        assert axis.weights(x) @ nodes_values == pytest.approx(0.3 + 0.2 * s - 0.05 * s**3)


def test_cubic_axis_with_few_nodes_falls_back_to_linear():
    axis = Axis("aot550", (0.0, 1.0), "1", "identity", "cubic")
    np.testing.assert_allclose(axis.weights(0.25), [0.75, 0.25])
    assert axis.describe()["method"] == "linear"


def test_out_of_range_names_parameter_value_and_range():
    axis = Axis("solar_zenith", (0.0, 70.0), "deg")
    with pytest.raises(ValueError, match=r"solar_zenith=75 deg is outside .* range 0-70 deg"):
        axis.weights(75.0)
    with pytest.raises(ValueError, match="not a finite number"):
        axis.check(float("nan"))


def test_bad_axes_are_rejected():
    with pytest.raises(ValueError, match="strictly increasing"):
        Axis("x", (0.0, 0.0, 1.0), "1")
    with pytest.raises(ValueError, match="unknown transform"):
        Axis("x", (0.0, 1.0), "1", "log10")


def test_transformed_linear_axis_with_many_nodes_hits_nodes_exactly():
    """Regression: the elevation transform once decreased, which broke node lookup."""
    axis = Axis("gas_elevation_km", (0.0, 0.5, 1.0, 1.5, 2.0), "km", "pressure")
    for i, node in enumerate(axis.nodes):
        np.testing.assert_allclose(axis.weights(node), np.eye(5)[i], atol=1e-12)
    w = axis.weights(0.75)
    assert w[1] > 0 and w[2] > 0 and w.sum() == pytest.approx(1.0)
