"""The look-up table's inverse in TensorFlow ops: differentiable in the atmosphere.

:class:`s2ac.physics.lut.Lut` interpolates one atmosphere at a time in NumPy. A physics-informed
generator instead estimates the atmosphere *per pixel* (AOT550, water vapour, aerosol-model
weights) and needs ``rho_s = inverse(toa; atmosphere)`` inside the graph, with gradients
flowing back to those estimates. This module is that inverse, written with the same
interpolation rules as :mod:`s2ac.physics.interp` (cubic splines in a transformed coordinate
along AOT, solar zenith and azimuth; linear elsewhere), so it equals the NumPy inverse to float
precision over the table's domain.

Two steps keep it cheap:

1. per *sample*, the acquisition geometry (sun and view zenith, relative azimuth, elevation,
   ozone, satellite) contracts every table down to the per-pixel axes: the path reflectance to
   ``(band, model, aot, water vapour)``, transmittances and spherical albedo to
   ``(band, model, aot)``, gas transmittance to ``(band, water vapour)``;
2. per *pixel*, AOT and water vapour weights contract what is left, and the aerosol-model
   weights mix the per-model coefficients (exact for one-hot weights; a mixture otherwise).

Log-valued tables (transmittances) are interpolated in log space, as the NumPy code does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from s2ac.bands import SATELLITES
from s2ac.physics.adjacency import mix, surface_reflectance
from s2ac.physics.interp import Axis
from s2ac.physics.lut import Lut

#: Per-sample geometry, in this order, as the last axis of a ``(batch, 6)`` tensor.
#: The adjacency effect's per-pixel coefficients (see :mod:`s2ac.physics.adjacency`).
ADJACENCY = ("direct_up", "diffuse_rayleigh_up", "diffuse_aerosol_up")
GEOMETRY = ("solar_zenith", "view_zenith", "relative_azimuth", "elevation_km", "ozone", "satellite")


def geometry_vector(atmosphere: Any) -> tuple[float, ...]:
    """An :class:`~s2ac.physics.lut.Atmosphere`'s :data:`GEOMETRY` values."""
    a = atmosphere
    values = (a.solar_zenith, a.view_zenith, a.relative_azimuth, a.elevation_km, a.ozone)
    return (*(float(v) for v in values), float(SATELLITES.index(a.satellite)))


def _transform(name: str, x: tf.Tensor) -> tf.Tensor:
    if name == "identity":
        return x
    if name == "sec":
        return 1.0 / tf.cos(x * (np.pi / 180.0))
    if name == "pressure":
        return 1.0 - tf.exp(-x / 8.0)
    if name == "sqrt":
        return tf.sqrt(x)
    if name == "cosine":
        return -tf.cos(x * (np.pi / 180.0))
    raise ValueError(f"unknown transform {name!r}")


class AxisWeights:
    """One table axis in TensorFlow: values → interpolation weights over its nodes, ``(..., n)``.

    Cubic axes evaluate the not-a-knot spline of the identity matrix (the same
    :class:`~scipy.interpolate.CubicSpline` the NumPy :class:`Axis` uses) as piecewise cubic
    polynomials; values are clipped to the node range first (zero gradient outside it).
    """

    def __init__(self, axis: Axis, dtype: tf.DType) -> None:
        self.name, self.transform, self.n = axis.name, axis.transform, len(axis.nodes)
        self.low, self.high = float(axis.nodes[0]), float(axis.nodes[-1])
        self.dtype = dtype
        x = axis._coordinate(np.asarray(axis.nodes, dtype=np.float64))
        self.x = tf.constant(x, dtype)
        spline = axis._spline
        self.coefficients = None if spline is None else tf.constant(spline.c, dtype)  # (4,n-1,n)

    def __call__(self, values: tf.Tensor) -> tf.Tensor:
        values = tf.cast(values, self.dtype)
        if self.n == 1:
            return tf.ones([*values.shape, 1], self.dtype)
        shape = tf.shape(values)
        xq = _transform(self.transform, tf.clip_by_value(values, self.low, self.high))
        flat = tf.reshape(xq, [-1])
        index = tf.searchsorted(self.x, flat, side="right") - 1
        index = tf.clip_by_value(index, 0, self.n - 2)
        left = tf.gather(self.x, index)
        if self.coefficients is None:
            frac = (flat - left) / (tf.gather(self.x, index + 1) - left)
            weights = tf.one_hot(index, self.n, dtype=self.dtype) * (1.0 - frac)[:, None]
            weights += tf.one_hot(index + 1, self.n, dtype=self.dtype) * frac[:, None]
        else:
            c = tf.gather(self.coefficients, index, axis=1)  # (4, N, n)
            t = (flat - left)[:, None]
            weights = ((c[0] * t + c[1]) * t + c[2]) * t + c[3]
        return tf.reshape(weights, tf.concat([shape, [self.n]], axis=0))


class TFLut:
    """The look-up table as TensorFlow constants, with the Lambertian inverse and forward model
    for per-pixel atmospheres (see the module docstring).

    Shapes: ``toa`` ``(B, H, W, 4)``; ``aot550`` and ``water_vapour`` ``(B, H, W)``;
    ``model_weights`` ``(B, H, W, M)`` over :attr:`aerosol_models` (summing to 1);
    ``geometry`` ``(B, 6)`` in the order of :data:`GEOMETRY` (satellite as 0 = S2A, 1 = S2B).
    """

    def __init__(self, lut: Lut | None = None, dtype: tf.DType = tf.float32) -> None:
        lut = lut or Lut.load()
        self.lut, self.dtype = lut, dtype
        self.aerosol_models = lut.aerosol_models
        self.axes = {name: AxisWeights(axis, dtype) for name, axis in lut.axes.items()}
        tables = lut._tables
        self._path = tf.constant(tables["path_reflectance"], dtype)
        self._log_gas = tf.constant(np.log(np.maximum(tables["gas_transmittance"], 1e-12)), dtype)
        self._log_t = tf.constant(np.log(np.maximum(tables["transmittance"], 1e-12)), dtype)
        self._albedo = tf.constant(tables["spherical_albedo"], dtype)
        #: Upward transmittances of the adjacency effect (tables built since s2ac 0.2).
        self._adjacency = {name: tf.constant(tables[name], dtype) for name in ADJACENCY
                           if name in tables}  # fmt: skip

    @property
    def has_adjacency(self) -> bool:
        """Whether the table holds the adjacency effect's transmittances."""
        return len(self._adjacency) == len(ADJACENCY)

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """The per-pixel parameters' domain (AOT550, water vapour)."""
        return {name: (self.axes[name].low, self.axes[name].high)
                for name in ("aot550", "water_vapour")}  # fmt: skip

    def geometry(self, atmospheres: list[Any]) -> tf.Tensor:
        """``(B, 6)`` geometry of :class:`~s2ac.physics.lut.Atmosphere` objects."""
        return tf.constant([geometry_vector(a) for a in atmospheres], self.dtype)

    def _per_sample(self, geometry: tf.Tensor) -> Mapping[str, tf.Tensor]:
        """Contract the geometry axes: tables over the per-pixel axes, one per sample.

        Done once per distinct geometry of the batch: the contraction gathers the whole table
        per sample (9 ms each here), and the tiles of a scene all share one geometry."""
        g = tf.cast(geometry, self.dtype)
        unique, index = tf.raw_ops.UniqueV2(x=g, axis=[0])
        tables = self._contract(unique)
        return {name: tf.gather(table, index) for name, table in tables.items()}

    def _contract(self, g: tf.Tensor) -> Mapping[str, tf.Tensor]:
        """:meth:`_per_sample` for every row of ``g``."""
        sza, vza, raa, elevation, ozone = (g[:, i] for i in range(5))
        raa = tf.where(raa > 180.0, 360.0 - raa, raa)
        satellite = tf.cast(tf.round(g[:, 5]), tf.int32)
        a = self.axes
        w_elev, w_sza, w_vza = (
            a["elevation_km"](elevation),
            a["solar_zenith"](sza),
            a["view_zenith"](vza),
        )
        w_raa, w_oz = a["relative_azimuth"](raa), a["ozone"](ozone)
        path = tf.gather(self._path, satellite)  # (B, band, M, A, E, SZA, VZA, RAA, WV, OZ)
        path = tf.einsum("bnmaeszrvo,bo->bnmaeszrv", path, w_oz)
        path = tf.einsum("bnmaeszrv,br->bnmaeszv", path, w_raa)
        path = tf.einsum("bnmaeszv,bz->bnmaesv", path, w_vza)
        path = tf.einsum("bnmaesv,bs->bnmaev", path, w_sza)
        path = tf.einsum("bnmaev,be->bnmav", path, w_elev)
        log_t = tf.einsum("bnmaez,be->bnmaz", tf.gather(self._log_t, satellite), w_elev)
        log_down = tf.einsum("bnmaz,bz->bnma", log_t, a["zenith"](sza))
        log_up = tf.einsum("bnmaz,bz->bnma", log_t, a["zenith"](vza))
        albedo = tf.einsum("bnmae,be->bnma", tf.gather(self._albedo, satellite), w_elev)
        airmass = 1.0 / tf.cos(sza * (np.pi / 180.0)) + 1.0 / tf.cos(vza * (np.pi / 180.0))
        gas = tf.gather(self._log_gas, satellite)  # (B, band, GWV, GOZ, AM, GEL)
        gas = tf.einsum("bngozl,bl->bngoz", gas, a["gas_elevation_km"](elevation))
        gas = tf.einsum("bngoz,bz->bngo", gas, a["airmass"](airmass))
        gas = tf.einsum("bngo,bo->bng", gas, a["gas_ozone"](ozone))
        adjacency = {
            name: tf.einsum("bnmaez,be,bz->bnma", tf.gather(table, satellite), w_elev, w_vza)
            for name, table in self._adjacency.items()
        }  # fmt: skip
        return {"path": path, "log_down": log_down, "log_up": log_up, "albedo": albedo,
                "log_gas": gas, **adjacency}  # fmt: skip

    def coefficients(
        self, aot550: tf.Tensor, water_vapour: tf.Tensor, model_weights: tf.Tensor,
        geometry: tf.Tensor,
    ) -> dict[str, tf.Tensor]:  # fmt: skip
        """Per-pixel ``path_reflectance``, ``gas_transmittance``, ``t_down``, ``t_up`` and
        ``spherical_albedo`` (and, when the table has them, the :data:`ADJACENCY`
        transmittances), each ``(B, H, W, 4)``."""
        s = self._per_sample(geometry)
        mix = tf.cast(model_weights, self.dtype)
        w_aot = self.axes["aot550"](aot550)  # (B, H, W, A)
        w_wv = self.axes["water_vapour"](water_vapour)  # (B, H, W, V)
        w_gas = self.axes["gas_water_vapour"](water_vapour)  # (B, H, W, G)
        path = tf.einsum("bhwa,bnmav->bhwnmv", w_aot, s["path"])
        path = tf.einsum("bhwnmv,bhwv,bhwm->bhwn", path, w_wv, mix)

        def per_model(table: tf.Tensor, log: bool) -> tf.Tensor:
            values = tf.einsum("bhwa,bnma->bhwnm", w_aot, table)
            values = tf.exp(values) if log else values
            return tf.einsum("bhwnm,bhwm->bhwn", values, mix)

        return {
            "path_reflectance": path,
            "gas_transmittance": tf.exp(tf.einsum("bhwg,bng->bhwn", w_gas, s["log_gas"])),
            "t_down": per_model(s["log_down"], log=True),
            "t_up": per_model(s["log_up"], log=True),
            "spherical_albedo": per_model(s["albedo"], log=False),
            **{name: per_model(s[name], log=False) for name in self._adjacency},
        }

    @staticmethod
    def invert(toa: tf.Tensor, coefficients: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Surface reflectance from TOA under given per-pixel ``coefficients``."""
        c = coefficients
        transmission = c["gas_transmittance"] * c["t_down"] * c["t_up"]
        y = (tf.cast(toa, c["path_reflectance"].dtype) - c["path_reflectance"]) / transmission
        return y / (1.0 + c["spherical_albedo"] * y)

    @staticmethod
    def invert_adjacent(
        toa: tf.Tensor, coefficients: Mapping[str, tf.Tensor], environment: tuple[Any, Any]
    ) -> tf.Tensor:
        """Surface reflectance from TOA given the Rayleigh and aerosol environment reflectances
        (:class:`s2ac.physics.tf_adjacency.TFEnvironment`): the exact inverse of 6S's
        non-uniform surface, as :func:`s2ac.physics.forward.invert`."""
        c = coefficients
        env = mix(*environment, c["diffuse_rayleigh_up"], c["diffuse_aerosol_up"])
        return surface_reflectance(tf.cast(toa, c["path_reflectance"].dtype), c, env)

    def inverse(
        self, toa: tf.Tensor, aot550: tf.Tensor, water_vapour: tf.Tensor,
        model_weights: tf.Tensor, geometry: tf.Tensor,
    ) -> tf.Tensor:  # fmt: skip
        """Surface reflectance ``(B, H, W, 4)``: the exact inverse of :meth:`forward`."""
        return self.invert(toa, self.coefficients(aot550, water_vapour, model_weights, geometry))

    def forward(
        self, surface: tf.Tensor, aot550: tf.Tensor, water_vapour: tf.Tensor,
        model_weights: tf.Tensor, geometry: tf.Tensor,
    ) -> tf.Tensor:  # fmt: skip
        """TOA reflectance ``(B, H, W, 4)`` of a Lambertian surface."""
        c = self.coefficients(aot550, water_vapour, model_weights, geometry)
        transmission = c["gas_transmittance"] * c["t_down"] * c["t_up"]
        rho = tf.cast(surface, self.dtype)
        return c["path_reflectance"] + transmission * rho / (1.0 - c["spherical_albedo"] * rho)
