"""Tensor-product interpolation on regular (rectilinear) grids, one 1-D rule per axis.

Why not plain multilinear everywhere: 6S quantities are strongly curved along AOT and the solar
zenith angle (e.g. T_down at 70 deg), and linear interpolation there needs 2-3x more nodes (each
node is hundreds of 6S runs) for the same 0.002 accuracy. Along those axes we use a cubic spline
(not-a-knot) in a transformed coordinate; along the short axes (view zenith, azimuth, elevation,
gases) plain linear. Both rules are linear in the node values, so interpolating a table is a
contraction of the table with one weight vector per axis — exact, vectorised and cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

#: Coordinate transforms: interpolation is linear/cubic in ``transform(value)``.
TRANSFORMS = {
    "identity": lambda x: x,
    # Solar/view zenith in degrees -> air mass 1/cos: transmittances are ~exp(-tau * sec).
    "sec": lambda x: 1.0 / np.cos(np.radians(x)),
    # Elevation in km -> 1 - relative pressure (scale height 8 km), increasing with elevation:
    # the Rayleigh optical depth is linear in it.
    "pressure": lambda x: 1.0 - np.exp(-np.asarray(x, dtype=np.float64) / 8.0),
    "sqrt": np.sqrt,
    # Relative azimuth in degrees -> -cos: the path reflectance is a short Fourier series in the
    # azimuth (terms ~ sin^k(view zenith)), i.e. a low-order polynomial in cos(azimuth).
    "cosine": lambda x: -np.cos(np.radians(x)),
}
METHODS = ("linear", "cubic")
#: Tolerance when checking a value against the grid range (float noise, e.g. 70.0000001 deg).
_RANGE_TOL = 1e-9


@dataclass(frozen=True)
class Axis:
    """One numeric grid axis: node values (in user units), how to interpolate along it."""

    name: str
    nodes: tuple[float, ...]
    units: str
    transform: str = "identity"
    method: str = "linear"
    _spline: CubicSpline | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes = np.asarray(self.nodes, dtype=np.float64)
        if nodes.ndim != 1 or nodes.size == 0 or not np.all(np.isfinite(nodes)):
            raise ValueError(f"axis {self.name}: nodes must be a non-empty list of numbers")
        if np.any(np.diff(nodes) <= 0):
            raise ValueError(
                f"axis {self.name}: nodes must be strictly increasing, got {self.nodes}"
            )
        if self.transform not in TRANSFORMS:
            raise ValueError(f"axis {self.name}: unknown transform {self.transform!r}")
        if self.method not in METHODS:
            raise ValueError(f"axis {self.name}: unknown method {self.method!r}")
        x = self._coordinate(nodes)
        if np.any(np.diff(x) <= 0):
            raise ValueError(
                f"axis {self.name}: transform {self.transform} must keep nodes increasing"
            )
        if self.method == "cubic" and nodes.size >= 4:
            object.__setattr__(self, "_spline", CubicSpline(x, np.eye(nodes.size), axis=0))

    def _coordinate(self, value: np.ndarray | float) -> np.ndarray:
        return np.asarray(TRANSFORMS[self.transform](np.asarray(value, dtype=np.float64)))

    def check(self, value: float, label: str | None = None) -> float:
        """Return ``value`` if it lies within the nodes, else raise a ValueError naming it."""
        low, high = self.nodes[0], self.nodes[-1]
        name = label or self.name
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r} is not a finite number")
        if value < low - _RANGE_TOL or value > high + _RANGE_TOL:
            unit = "" if self.units == "1" else f" {self.units}"
            span = f"{low:g}-{high:g}" if low != high else f"exactly {low:g}"
            raise ValueError(
                f"{name}={value:g}{unit} is outside the look-up table range {span}{unit}"
            )
        return min(max(value, low), high)

    def weights(self, value: float) -> np.ndarray:
        """Weights over the nodes whose dot product with node values interpolates at ``value``."""
        value = self.check(value)
        n = len(self.nodes)
        if n == 1:
            return np.ones(1)
        if self._spline is not None:
            return np.asarray(self._spline(float(self._coordinate(value))), dtype=np.float64)
        x = self._coordinate(np.asarray(self.nodes))
        xq = float(self._coordinate(value))
        i = int(np.clip(np.searchsorted(x, xq) - 1, 0, n - 2))
        frac = (xq - x[i]) / (x[i + 1] - x[i])
        weights = np.zeros(n)
        weights[i], weights[i + 1] = 1.0 - frac, frac
        return weights

    def weights_many(self, values: Sequence[float]) -> np.ndarray:
        """:meth:`weights` of many values at once: (P, nodes)."""
        clipped = np.array([self.check(float(v)) for v in values], dtype=np.float64)
        n = len(self.nodes)
        if n == 1:
            return np.ones((clipped.size, 1))
        xq = self._coordinate(clipped)
        if self._spline is not None:
            return np.asarray(self._spline(xq), dtype=np.float64).reshape(clipped.size, n)
        x = self._coordinate(np.asarray(self.nodes))
        i = np.clip(np.searchsorted(x, xq) - 1, 0, n - 2)
        frac = (xq - x[i]) / (x[i + 1] - x[i])
        weights = np.zeros((clipped.size, n))
        rows = np.arange(clipped.size)
        weights[rows, i], weights[rows, i + 1] = 1.0 - frac, frac
        return weights

    def describe(self) -> dict[str, object]:
        """JSON-able description stored in the LUT metadata."""
        return {
            "nodes": list(self.nodes),
            "units": self.units,
            "transform": self.transform,
            "method": self.method if len(self.nodes) >= 4 or self.method == "linear" else "linear",
        }


def contract(values: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
    """Interpolate: contract the trailing ``len(weights)`` axes of ``values`` with ``weights``."""
    if values.ndim < len(weights):
        raise ValueError("more weight vectors than table axes")
    out = np.asarray(values, dtype=np.float64)
    for w in reversed(weights):
        if out.shape[-1] != w.shape[0]:
            raise ValueError(f"weight vector of length {w.shape[0]} for an axis of {out.shape[-1]}")
        out = out @ w
    return out
