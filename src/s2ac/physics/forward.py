"""The forward model over a patch: an atmosphere that varies across it, and the adjacency effect.

A :class:`FieldAtmosphere` is one :class:`~s2ac.physics.lut.Atmosphere` (aerosol model, ozone,
satellite, geometry: constant over a patch of a few km) whose AOT550, water vapour and elevation
are given on a control grid every ``step`` pixels. The table's coefficients are evaluated at every
control node and interpolated bilinearly in between; at a node the model *is* the table at that
node's atmosphere, which is what the tests compare with direct 6S runs. Then, per pixel and band::

    rho_toa = rho_path + T_g T_down (t_dir rho_s + t_dif rho_e) / (1 - S rho_e)

with ``t_dif = T_up - t_dir`` and the environment reflectance ``rho_e`` of
:mod:`s2ac.physics.adjacency`; without adjacency ``rho_e = rho_s`` and this is the table's
Lambertian coupling (:meth:`Lut.forward`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from s2ac.bands import N_BANDS
from s2ac.physics import adjacency
from s2ac.physics.lut import Atmosphere, Lut

#: Per-pixel atmosphere parameters a field may vary.
FIELD_PARAMETERS = ("aot550", "water_vapour", "elevation_km")


@dataclass(frozen=True)
class FieldAtmosphere:
    """An atmosphere whose AOT550, water vapour and elevation vary over the patch.

    Each field is an array (rows, cols) of values at control nodes ``step`` pixels apart, node
    (0, 0) on pixel (0, 0); it must reach the patch's last row and column.
    """

    base: Atmosphere
    aot550: np.ndarray
    water_vapour: np.ndarray
    elevation_km: np.ndarray
    step: int

    def __post_init__(self) -> None:
        shapes = {np.shape(getattr(self, name)) for name in FIELD_PARAMETERS}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"the three fields must be 2-D arrays of one shape, got {shapes}")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")

    @classmethod
    def uniform(cls, atmosphere: Atmosphere, size: int, step: int) -> FieldAtmosphere:
        nodes = -(-(size - 1) // step) + 1
        full = lambda value: np.full((nodes, nodes), value)  # noqa: E731
        return cls(atmosphere, *(full(getattr(atmosphere, n)) for n in FIELD_PARAMETERS), step)

    def at(self, row: int, col: int) -> Atmosphere:
        """The atmosphere at one control node."""
        values = {name: float(getattr(self, name)[row, col]) for name in FIELD_PARAMETERS}
        return replace(self.base, **values)

    def ranges(self) -> dict[str, list[float]]:
        """[min, max] of each field (for the manifest)."""
        return {
            name: [round(float(np.min(v)), 4), round(float(np.max(v)), 4)]
            for name in FIELD_PARAMETERS
            if (v := getattr(self, name)) is not None
        }


def node_coefficients(lut: Lut, field: FieldAtmosphere, with_adjacency: bool) -> dict:
    """Coefficients at every control node: name -> (rows, cols, bands)."""
    rows, cols = field.aot550.shape
    nodes = [field.at(i, j) for i in range(rows) for j in range(cols)]
    values = lut.coefficients_many(nodes, with_adjacency)
    return {name: v.reshape(rows, cols, N_BANDS) for name, v in values.items()}


def upsample(nodes: np.ndarray, step: int, height: int, width: int) -> np.ndarray:
    """Bilinear interpolation of node values (rows, cols, ...) onto the pixel grid."""

    def weights(count: int, n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.arange(count) / step
        low = np.minimum(np.floor(position).astype(int), n_nodes - 2)
        if n_nodes < 2 or position[-1] > n_nodes - 1 + 1e-9:
            raise ValueError(f"{n_nodes} control nodes every {step} px do not cover {count} px")
        return low, low + 1, position - low

    r0, r1, fr = weights(height, nodes.shape[0])
    c0, c1, fc = weights(width, nodes.shape[1])
    fr = fr.reshape(-1, 1, *([1] * (nodes.ndim - 2)))
    fc = fc.reshape(1, -1, *([1] * (nodes.ndim - 2)))
    top = nodes[r0][:, c0] * (1 - fc) + nodes[r0][:, c1] * fc
    bottom = nodes[r1][:, c0] * (1 - fc) + nodes[r1][:, c1] * fc
    return top * (1 - fr) + bottom * fr


def _maps(lut: Lut, field: FieldAtmosphere, shape: tuple, with_adjacency: bool) -> dict:
    nodes = node_coefficients(lut, field, with_adjacency)
    return {name: upsample(v, field.step, shape[0], shape[1]) for name, v in nodes.items()}


def forward(
    lut: Lut,
    surface: np.ndarray,
    field: FieldAtmosphere,
    environment: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """TOA reflectance (float32, H x W x bands) of a surface patch under a field atmosphere.

    ``environment``: the Rayleigh and aerosol environment reflectances of the patch
    (:func:`s2ac.physics.adjacency.environment`, cropped like the surface); None = no adjacency.
    """
    rho = np.asarray(surface, dtype=np.float64)
    if rho.ndim != 3 or rho.shape[-1] != N_BANDS:
        raise ValueError(f"surface must be (height, width, {N_BANDS}), got {rho.shape}")
    c = _maps(lut, field, rho.shape, with_adjacency=environment is not None)
    if environment is None:
        transmission = c["gas_transmittance"] * c["t_down"] * c["t_up"]
        toa = c["path_reflectance"] + transmission * rho / (1.0 - c["spherical_albedo"] * rho)
        return toa.astype(np.float32)
    env = adjacency.mix(*environment, c["diffuse_rayleigh_up"], c["diffuse_aerosol_up"])
    direct = c["direct_up"]
    diffuse = c["t_up"] - direct
    surface_term = (direct * rho + diffuse * env) / (1.0 - c["spherical_albedo"] * env)
    toa = c["path_reflectance"] + c["gas_transmittance"] * c["t_down"] * surface_term
    return toa.astype(np.float32)


def invert(
    lut: Lut,
    toa: np.ndarray,
    field: FieldAtmosphere,
    environment: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Surface reflectance (float32) from TOA under a known field atmosphere: the exact inverse
    of :func:`forward` given the same environment reflectances (which depend on the surface
    itself, so only an oracle that knows the surroundings has them)."""
    y = np.asarray(toa, dtype=np.float64)
    if y.ndim != 3 or y.shape[-1] != N_BANDS:
        raise ValueError(f"TOA must be (height, width, {N_BANDS}), got {y.shape}")
    c = _maps(lut, field, y.shape, with_adjacency=environment is not None)
    if environment is None:
        x = (y - c["path_reflectance"]) / (c["gas_transmittance"] * c["t_down"] * c["t_up"])
        return (x / (1.0 + c["spherical_albedo"] * x)).astype(np.float32)
    env = adjacency.mix(*environment, c["diffuse_rayleigh_up"], c["diffuse_aerosol_up"])
    return adjacency.surface_reflectance(y, c, env).astype(np.float32)
