"""The 6S look-up table: load it, interpolate the atmosphere, run the Lambertian forward model.

Physics: for a Lambertian surface of reflectance rho_s, per band (6S's own coupling)::

    rho_toa = rho_path + T_g * T_down * T_up * rho_s / (1 - S * rho_s)

``rho_path`` is 6S's intrinsic atmospheric reflectance, which already contains gaseous
absorption: T_g multiplies only the surface term (applying it to the path too is off by up to
~0.01). The exact inverse is ``y = (rho_toa - rho_path) / (T_g T_down T_up)``,
``rho_s = y / (1 + S y)``, the same as 6S's xa/xb/xc atmospheric correction.

The committed table ``physics/data/s2_lut.npz`` is built once with :func:`build_lut`
(``s2ac physics build-lut``), so users need neither 6S nor Py6S. Measured against direct 6S it
is accurate to 0.002 in TOA reflectance (mean ~0.00015), except for the maritime model at AOT >= 0.8
(up to 0.0025: 6S's own maritime path ripples) and within 5 deg of exact backscatter (see
:attr:`Atmosphere.scattering_angle`); grid, accuracy and how it was built are in
``physics/data/README.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from s2ac.bands import BAND_NAMES, N_BANDS, SATELLITES
from s2ac.errors import InputDataError
from s2ac.physics.build import FORMAT, build_lut
from s2ac.physics.grid import DEFAULT_GRID, LutGrid
from s2ac.physics.interp import Axis, contract
from s2ac.physics.sixs import Conditions

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_LUT_PATH",
    "MAX_SCATTERING_ANGLE",
    "Atmosphere",
    "Lut",
    "LutGrid",
    "build_lut",
]

DEFAULT_LUT_PATH = Path(__file__).resolve().parent / "data" / "s2_lut.npz"
#: Up to this scattering angle (deg) the table is accurate to 0.002 against 6S (measured).
MAX_SCATTERING_ANGLE = 175.0
COEFFICIENTS = ("path_reflectance", "gas_transmittance", "t_down", "t_up", "spherical_albedo")


@dataclass(frozen=True)
class Atmosphere(Conditions):
    """Atmosphere and geometry of one scene: the 6S :class:`Conditions` plus the satellite.

    ``relative_azimuth`` is |solar azimuth - view azimuth| in 0-360 deg (folded to 0-180; 0 means
    the sun is behind the sensor). ``water_vapour``, ``ozone`` and ``aot550`` are columns above the
    target, ``elevation_km`` its altitude; ``satellite`` selects the S2A or S2B spectral responses.
    """

    satellite: str = "S2A"

    def __post_init__(self) -> None:
        if self.satellite not in SATELLITES:
            raise ValueError(f"satellite {self.satellite!r} is not one of {', '.join(SATELLITES)}")
        if not (math.isfinite(self.relative_azimuth) and 0 <= self.relative_azimuth <= 360):
            raise ValueError(f"relative_azimuth={self.relative_azimuth!r} deg must be within 0-360")
        super().__post_init__()

    @property
    def folded_azimuth(self) -> float:
        """Relative azimuth folded to 0-180 deg (the geometry is symmetric about the sun plane)."""
        return (
            360.0 - self.relative_azimuth if self.relative_azimuth > 180 else self.relative_azimuth
        )

    @property
    def scattering_angle(self) -> float:
        """Scattering angle (deg) of the sun-target-sensor geometry; 180 = exact backscatter.

        The table meets its 0.002 accuracy for angles up to :data:`MAX_SCATTERING_ANGLE`; closer
        to exact backscatter 6S's aerosol glory (strongest for the maritime model) is narrower than
        the angular grid. Sentinel-2 (10:30 orbit, sun >= ~20 deg from zenith) never gets there.
        """
        sza, vza, raa = np.radians([self.solar_zenith, self.view_zenith, self.relative_azimuth])
        cos = -np.cos(sza) * np.cos(vza) - np.sin(sza) * np.sin(vza) * np.cos(raa)
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


class Lut:
    """An interpolating view of one look-up table file (see :meth:`load`)."""

    def __init__(self, path: Path, tables: dict[str, np.ndarray], metadata: dict) -> None:
        self.path = path
        self.metadata = metadata
        self._tables = tables
        self.aerosol_models: tuple[str, ...] = tuple(metadata["aerosol_models"])
        self.axes = {
            name: Axis(name, tuple(spec["nodes"]), spec["units"], spec["transform"], spec["method"])
            for name, spec in metadata["axes"].items()
        }
        self._log_values = {
            name: spec["values"] == "log" for name, spec in metadata["variables"].items()
        }

    @classmethod
    def load(cls, path: str | Path | None = None) -> Lut:
        """Load (once per path; cached) a table file; default: the packaged ``s2_lut.npz``."""
        return _load(Path(path or DEFAULT_LUT_PATH).resolve())

    @property
    def sixs_version(self) -> str:
        return str(self.metadata["sixs_version"])

    def _table(self, variable: str, satellite: str, model: str | None):
        """One variable's table for a satellite (and aerosol model): (band, ...) and its axes."""
        table = self._tables[variable][SATELLITES.index(satellite)]  # (band, ...)
        axes = list(self.metadata["variables"][variable]["axes"][2:])
        if axes[0] == "aerosol_model":
            return table[:, self.aerosol_models.index(model)], axes[1:]
        return table, axes

    def _interpolate(self, variable: str, satellite: str, model: str | None, **values: float):
        """Interpolate one variable at the named axis values -> array over bands (4,)."""
        table, axes = self._table(variable, satellite, model)
        weights = [self.axes[name].weights(values[name]) for name in axes]
        if self._log_values[variable]:
            return np.exp(contract(np.log(np.maximum(table, 1e-12)), weights))
        return contract(table, weights)

    def _interpolate_many(self, variable: str, satellite: str, model: str | None, **values):
        """:meth:`_interpolate` at P points at once: each value a sequence of P numbers ->
        array (P, bands). One einsum over the table instead of P contractions."""
        table, axes = self._table(variable, satellite, model)
        weights = [self.axes[name].weights_many(values[name]) for name in axes]
        letters = "cdefghijklmn"[: len(axes)]
        spec = f"b{letters}," + ",".join(f"p{x}" for x in letters) + "->pb"
        if self._log_values[variable]:
            log_table = np.log(np.maximum(table.astype(np.float64), 1e-12))
            return np.exp(np.einsum(spec, log_table, *weights, optimize="greedy"))
        return np.einsum(spec, table.astype(np.float64), *weights, optimize="greedy")

    def coefficients_many(
        self, atmospheres: list[Atmosphere], with_adjacency: bool = False
    ) -> dict[str, np.ndarray]:
        """:meth:`coefficients` (and :meth:`adjacency_coefficients`) of many atmospheres that
        share satellite and aerosol model: name -> array (P, bands). Equal to the one-by-one
        calls; ~50x faster for the control nodes of a field."""
        if not atmospheres:
            raise ValueError("no atmospheres given")
        first = atmospheres[0]
        if any((a.satellite, a.aerosol_model) != (first.satellite, first.aerosol_model)
               for a in atmospheres):  # fmt: skip
            raise ValueError("coefficients_many needs one satellite and aerosol model")
        if with_adjacency and not self.has_adjacency:
            self.adjacency_coefficients(first)  # raises the explanatory error
        for a in atmospheres:
            self._check(a)
        get = lambda name: [getattr(a, name) for a in atmospheres]  # noqa: E731
        sat, model = first.satellite, first.aerosol_model
        common = {"aot550": get("aot550"), "elevation_km": get("elevation_km")}
        out = {
            "path_reflectance": self._interpolate_many(
                "path_reflectance", sat, model, **common, solar_zenith=get("solar_zenith"),
                view_zenith=get("view_zenith"), relative_azimuth=get("folded_azimuth"),
                water_vapour=get("water_vapour"), ozone=get("ozone"),
            ),
            "gas_transmittance": self._interpolate_many(
                "gas_transmittance", sat, None, gas_water_vapour=get("water_vapour"),
                gas_ozone=get("ozone"), airmass=get("airmass"),
                gas_elevation_km=get("elevation_km"),
            ),
            "t_down": self._interpolate_many(
                "transmittance", sat, model, **common, zenith=get("solar_zenith")
            ),
            "t_up": self._interpolate_many(
                "transmittance", sat, model, **common, zenith=get("view_zenith")
            ),
            "spherical_albedo": self._interpolate_many("spherical_albedo", sat, model, **common),
        }  # fmt: skip
        if with_adjacency:
            for name in ("direct_up", "diffuse_rayleigh_up", "diffuse_aerosol_up"):
                out[name] = self._interpolate_many(
                    name, sat, model, **common, view_zenith=get("view_zenith")
                )
        return out

    def _check(self, atmosphere: Atmosphere) -> None:
        """Raise a ValueError naming the first parameter outside the table."""
        if atmosphere.aerosol_model not in self.aerosol_models:
            raise ValueError(
                f"aerosol_model {atmosphere.aerosol_model!r} is not in this look-up table "
                f"({', '.join(self.aerosol_models)})"
            )
        for name in ("aot550", "water_vapour", "ozone", "solar_zenith", "view_zenith",
                     "elevation_km"):  # fmt: skip
            self.axes[name].check(getattr(atmosphere, name))
        self.axes["relative_azimuth"].check(atmosphere.folded_azimuth, "relative_azimuth (folded)")
        self.axes["airmass"].check(atmosphere.airmass)

    def coefficients(self, atmosphere: Atmosphere) -> dict[str, np.ndarray]:
        """Per-band (B2, B3, B4, B8) ``path_reflectance``, ``gas_transmittance``, ``t_down``,
        ``t_up`` and ``spherical_albedo`` at this atmosphere, each a float64 array of shape (4,)."""
        self._check(atmosphere)
        a, sat, model = atmosphere, atmosphere.satellite, atmosphere.aerosol_model
        common = {"aot550": a.aot550, "elevation_km": a.elevation_km}
        path = self._interpolate(
            "path_reflectance", sat, model, **common, solar_zenith=a.solar_zenith,
            view_zenith=a.view_zenith, relative_azimuth=a.folded_azimuth,
            water_vapour=a.water_vapour, ozone=a.ozone,
        )  # fmt: skip
        gas = self._interpolate(
            "gas_transmittance", sat, None, gas_water_vapour=a.water_vapour, gas_ozone=a.ozone,
            airmass=a.airmass, gas_elevation_km=a.elevation_km,
        )  # fmt: skip
        down = self._interpolate("transmittance", sat, model, **common, zenith=a.solar_zenith)
        up = self._interpolate("transmittance", sat, model, **common, zenith=a.view_zenith)
        albedo = self._interpolate("spherical_albedo", sat, model, **common)
        return dict(zip(COEFFICIENTS, (path, gas, down, up, albedo), strict=True))

    @property
    def has_adjacency(self) -> bool:
        """Whether the table holds the transmittances of the adjacency effect."""
        return "direct_up" in self._tables

    def adjacency_coefficients(self, atmosphere: Atmosphere) -> dict[str, np.ndarray]:
        """Per-band ``direct_up``, ``diffuse_rayleigh_up`` and ``diffuse_aerosol_up`` at this
        atmosphere (see :mod:`s2ac.physics.adjacency`), each float64 of shape (4,)."""
        if not self.has_adjacency:
            raise InputDataError(
                self.path, "this look-up table has no adjacency transmittances",
                "rebuild it with `s2ac physics build-lut` (s2ac >= 0.2 adds them)",
            )  # fmt: skip
        self._check(atmosphere)
        a = atmosphere
        values = {"aot550": a.aot550, "elevation_km": a.elevation_km, "view_zenith": a.view_zenith}
        return {
            name: self._interpolate(name, a.satellite, a.aerosol_model, **values)
            for name in ("direct_up", "diffuse_rayleigh_up", "diffuse_aerosol_up")
        }

    def forward(self, surface: np.ndarray, atmosphere: Atmosphere) -> np.ndarray:
        """TOA reflectance (float32, same shape) of Lambertian surface reflectance (..., 4)."""
        rho = _bands_last(surface, "surface reflectance")
        c = self.coefficients(atmosphere)
        transmission = c["gas_transmittance"] * c["t_down"] * c["t_up"]
        toa = c["path_reflectance"] + transmission * rho / (1.0 - c["spherical_albedo"] * rho)
        return toa.astype(np.float32)

    def inverse(self, toa: np.ndarray, atmosphere: Atmosphere) -> np.ndarray:
        """Surface reflectance (float32) from TOA reflectance (..., 4): exact inverse of forward."""
        rho = _bands_last(toa, "TOA reflectance")
        c = self.coefficients(atmosphere)
        transmission = c["gas_transmittance"] * c["t_down"] * c["t_up"]
        y = (rho - c["path_reflectance"]) / transmission
        return (y / (1.0 + c["spherical_albedo"] * y)).astype(np.float32)


def _bands_last(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != N_BANDS:
        raise ValueError(
            f"{what} must have the {N_BANDS} bands {', '.join(BAND_NAMES)} last, got shape "
            f"{array.shape}"
        )
    return array


@lru_cache(maxsize=4)
def _load(path: Path) -> Lut:
    fix = "build it with `s2ac physics build-lut` or reinstall s2ac"
    if not path.is_file():
        raise InputDataError(path, "look-up table file not found", fix)
    try:
        with np.load(path, allow_pickle=False) as data:
            metadata = json.loads(str(data["metadata"]))
            tables = {name: np.asarray(data[name]) for name in metadata["variables"]}
    except (OSError, ValueError, KeyError) as exc:
        raise InputDataError(path, f"not a readable s2ac look-up table ({exc})", fix) from exc
    if metadata.get("format") != FORMAT:
        raise InputDataError(path, f"format {metadata.get('format')!r}, expected {FORMAT!r}", fix)
    return Lut(path, tables, metadata)
