"""The look-up table grid: node values per dimension and the 6S runs they need.

A full Cartesian grid over 8 parameters x 8 band/satellite pairs would take days of 6S time. The
grid is split along what separates physically (each split measured against direct 6S runs, see
``physics/data/README.md``):

* 6S is run in spectral mode (one run covers B2, B3, B4, B8 of S2A and S2B) and without water
  vapour or ozone. Gas absorption is multiplied back per 2.5 nm step at build time, exactly as 6S
  combines it (``path = T_O3 * [rho_R + (rho_mix - rho_R) * T_H2O(half column)]``), from cheap
  aerosol-free runs: water transmittance depends only on the absorber path ``wv * airmass`` (and on
  elevation through pressure), ozone follows Beer's law in ``o3 * airmass`` (with a per-step
  absorption coefficient that 6S varies slightly with target elevation). So water vapour and
  ozone cost no aerosol runs at all.
* Scattering transmittance T(theta) is one function for the sun (T_down) and the view (T_up)
  directions (reciprocity), and the spherical albedo depends on neither angle.
* Only the path reflectance needs aerosol x AOT x elevation x full geometry runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from s2ac.physics.interp import Axis
from s2ac.physics.sixs import AEROSOL_MODELS, Conditions

#: Geometry of the gas runs: sza with 1/cos = 3 and nadir view, i.e. two-way air mass 4.
GAS_RUN_AIRMASS = 4.0
RAA_TRANSFORM, RAA_METHOD = "cosine", "cubic"
REFERENCE_MODEL = "continental"  # aerosol model written into aerosol-free (AOT = 0) runs


def zenith_for_airmass(airmass: float) -> float:
    """Solar zenith (deg) that, with a nadir view, gives this two-way air mass."""
    return math.degrees(math.acos(1.0 / (airmass - 1.0)))


@dataclass(frozen=True)
class LutGrid:
    """Node values of every dimension (units: AOT unitless, g/cm2, cm-atm, degrees, km).

    ``aot550`` must start at 0 (the aerosol-free runs double as the Rayleigh reference).
    ``gas_*`` fields define the dense, cheap gas sub-grid (6S runs without aerosol).
    """

    aerosol_models: tuple[str, ...] = ("continental", "maritime", "urban", "desert")
    aot550: tuple[float, ...] = (0.0, 0.1, 0.3, 0.6, 0.9, 1.2)
    elevation_km: tuple[float, ...] = (0.0, 2.0)
    solar_zenith: tuple[float, ...] = (
        0.0,
        5.0,
        10.0,
        15.0,
        20.0,
        25.0,
        30.0,
        40.0,
        50.0,
        60.0,
        70.0,
    )
    view_zenith: tuple[float, ...] = (0.0, 6.0, 12.0)
    relative_azimuth: tuple[float, ...] = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0)
    water_vapour: tuple[float, ...] = (0.2, 0.7, 1.5, 2.5, 3.5, 4.75, 6.0)
    ozone: tuple[float, ...] = (0.25, 0.35, 0.45)
    gas_water_vapour: tuple[float, ...] = (
        0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0,
    )  # fmt: skip
    gas_airmass: tuple[float, ...] = (2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.25, 3.5, 3.75, 4.0)
    gas_elevation_km: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    water_path_nodes: int = 36  # log-spaced absorber paths wv*airmass of the water runs
    ozone_run: float = 0.5  # cm-atm of the one ozone run (Beer's law gives every other amount)

    def __post_init__(self) -> None:
        unknown = set(self.aerosol_models) - set(AEROSOL_MODELS)
        if unknown or not self.aerosol_models:
            raise ValueError(f"aerosol models must be among {', '.join(AEROSOL_MODELS)}: {unknown}")
        if self.aot550[0] != 0.0:
            raise ValueError("aot550 nodes must start at 0 (the aerosol-free Rayleigh reference)")
        if not set(self.elevation_km) <= set(self.gas_elevation_km):
            raise ValueError("elevation_km nodes must be a subset of gas_elevation_km nodes")
        wv, gas_wv = self.water_vapour, self.gas_water_vapour
        if min(gas_wv) > min(wv) or max(gas_wv) < max(wv):
            raise ValueError("gas_water_vapour nodes must span the water_vapour nodes")
        if self.water_path_nodes < 2:
            raise ValueError("water_path_nodes must be >= 2")
        low, high = self.airmass_range
        if not (min(self.gas_airmass) <= low + 1e-9 and max(self.gas_airmass) >= high - 1e-9):
            raise ValueError(
                f"gas_airmass {self.gas_airmass} must span the air masses {low:.3f}-{high:.3f} "
                "of the solar/view zenith nodes"
            )
        self.axes()  # raises on non-increasing nodes

    @property
    def airmass_range(self) -> tuple[float, float]:
        sec = lambda deg: 1.0 / math.cos(math.radians(deg))  # noqa: E731
        low = sec(min(self.solar_zenith)) + sec(min(self.view_zenith))
        return low, sec(max(self.solar_zenith)) + sec(max(self.view_zenith))

    def water_paths(self) -> np.ndarray:
        """Absorber paths (g/cm2 x air mass) of the water runs: cover half columns to full paths."""
        low = 0.5 * min(self.water_vapour) * self.airmass_range[0]
        low = min(low, min(self.gas_water_vapour) * min(self.gas_airmass))
        high = max(self.gas_water_vapour) * max(self.gas_airmass)
        return np.geomspace(low * 0.95, high * 1.05, self.water_path_nodes)

    def axes(self) -> dict[str, Axis]:
        """Numeric axes of the runtime tables (aerosol model is categorical: an index)."""
        return {
            "aot550": Axis("aot550", self.aot550, "1", "identity", "cubic"),
            "elevation_km": Axis("elevation_km", self.elevation_km, "km", "pressure"),
            "solar_zenith": Axis("solar_zenith", self.solar_zenith, "deg", "identity", "cubic"),
            "view_zenith": Axis("view_zenith", self.view_zenith, "deg"),
            "relative_azimuth": Axis(
                "relative_azimuth", self.relative_azimuth, "deg", RAA_TRANSFORM, RAA_METHOD
            ),
            "water_vapour": Axis("water_vapour", self.water_vapour, "g/cm2"),
            "ozone": Axis("ozone", self.ozone, "cm-atm"),
            "zenith": Axis("zenith", self.solar_zenith, "deg", "sec", "cubic"),
            "gas_water_vapour": Axis("gas_water_vapour", self.gas_water_vapour, "g/cm2", "sqrt"),
            "gas_ozone": Axis("gas_ozone", self.ozone, "cm-atm"),
            "airmass": Axis("airmass", self.gas_airmass, "1"),
            "gas_elevation_km": Axis("gas_elevation_km", self.gas_elevation_km, "km", "pressure"),
        }

    def geometries(self) -> list[tuple[float, float]]:
        """Distinct (view zenith, relative azimuth) pairs: at nadir view the azimuth is moot."""
        pairs: list[tuple[float, float]] = []
        for vza in self.view_zenith:
            for raa in self.relative_azimuth:
                pair = (vza, self.relative_azimuth[0]) if vza == 0 else (vza, raa)
                if pair not in pairs:
                    pairs.append(pair)
        return pairs

    def runs(self) -> dict[str, Conditions]:
        """Every 6S run the build needs, keyed by :func:`run_key`, cheap aerosol-free runs first."""
        runs: list[Conditions] = []
        m_gas = zenith_for_airmass(GAS_RUN_AIRMASS)
        for elev in self.gas_elevation_km:
            for airmass in (*self.gas_airmass, GAS_RUN_AIRMASS):
                runs.append(gas_conditions(0.0, 0.0, zenith_for_airmass(airmass), elev))
            for path in self.water_paths():
                runs.append(gas_conditions(path / GAS_RUN_AIRMASS, 0.0, m_gas, elev))
            runs.append(gas_conditions(0.0, self.ozone_run, m_gas, elev))
        for aot in self.aot550:
            models = (REFERENCE_MODEL,) if aot == 0 else self.aerosol_models
            for model in models:
                for elev in self.elevation_km:
                    for sza in self.solar_zenith:
                        for vza, raa in self.geometries():
                            runs.append(Conditions(aot, model, 0.0, 0.0, sza, vza, raa, elev))
        return {run_key(c): c for c in runs}

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def gas_conditions(water: float, ozone: float, sza: float, elev: float) -> Conditions:
    return Conditions(0.0, REFERENCE_MODEL, water, ozone, sza, 0.0, 0.0, elev)


def run_key(c: Conditions) -> str:
    """Stable text key of a 6S run (6 decimals: what Py6S writes into the 6S input file)."""
    return (
        f"aot={c.aot550:.6f}|aer={c.aerosol_model}|wv={c.water_vapour:.6f}|o3={c.ozone:.6f}|"
        f"sza={c.solar_zenith:.6f}|vza={c.view_zenith:.6f}|raa={c.relative_azimuth:.6f}|"
        f"elev={c.elevation_km:.6f}"
    )


DEFAULT_GRID = LutGrid()
