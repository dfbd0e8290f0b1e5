"""Turn cached 6S spectra into the band-integrated tables of the look-up table.

Every band value is the SRF x solar weighted sum over 2.5 nm steps that 6S itself computes (see
:func:`s2ac.physics.sixs.band_weights`). Gas absorption is put back per step, which is how 6S
combines it (6SV1.1 ``main.f``): ``ratm = (romix - rorayl) * tgp2 + rorayl * tgp1`` where ``tgp1``
is the transmittance of all gases but water and ``tgp2 = tgp1 * T_H2O(half water column)``; the
aerosol runs are made with no water and no ozone, so their path is ``romix * T_rest`` and the
aerosol-free run at the same geometry gives ``rorayl * T_rest``.
"""

from __future__ import annotations

import math

import numpy as np

from s2ac.bands import BAND_NAMES, SATELLITES
from s2ac.physics.grid import (
    GAS_RUN_AIRMASS,
    REFERENCE_MODEL,
    LutGrid,
    gas_conditions,
    run_key,
    zenith_for_airmass,
)
from s2ac.physics.sixs import Conditions, Spectrum, band_weights

TG, TDOWN, TUP, SPHERICAL, PATH = range(5)  # rows of a cached run, see build.CACHED

#: Variables of the file: their axes (leading satellite, band), how values are interpolated.
VARIABLES: dict[str, dict[str, object]] = {
    "path_reflectance": {
        "axes": ["satellite", "band", "aerosol_model", "aot550", "elevation_km", "solar_zenith",
                 "view_zenith", "relative_azimuth", "water_vapour", "ozone"],
        "units": "1",
        "values": "identity",
        "description": "6S intrinsic atmospheric (path) reflectance, gaseous absorption included",
    },
    "gas_transmittance": {
        "axes": ["satellite", "band", "gas_water_vapour", "gas_ozone", "airmass",
                 "gas_elevation_km"],
        "units": "1",
        "values": "log",
        "description": "total (sun-target-sensor) gaseous transmittance T_g; airmass = "
        "1/cos(solar zenith) + 1/cos(view zenith)",
    },
    "transmittance": {
        "axes": ["satellite", "band", "aerosol_model", "aot550", "elevation_km", "zenith"],
        "units": "1",
        "values": "log",
        "description": "total (direct + diffuse) scattering transmittance along one direction: "
        "T_down = T(solar zenith), T_up = T(view zenith) (reciprocity)",
    },
    "spherical_albedo": {
        "axes": ["satellite", "band", "aerosol_model", "aot550", "elevation_km"],
        "units": "1",
        "values": "identity",
        "description": "spherical albedo S of the atmosphere",
    },
}  # fmt: skip


def _sec(deg: float) -> float:
    return 1.0 / math.cos(math.radians(deg))


class GasSpectra:
    """Monochromatic gas transmittances rebuilt from the aerosol-free gas runs."""

    def __init__(self, grid: LutGrid, spectra: dict[str, np.ndarray]) -> None:
        sza = zenith_for_airmass(GAS_RUN_AIRMASS)

        def tg(water: float, ozone: float, zenith: float, elev: float) -> np.ndarray:
            return spectra[run_key(gas_conditions(water, ozone, zenith, elev))][TG].astype(float)

        self.elevations = tuple(grid.gas_elevation_km)
        self.log_paths = np.log(grid.water_paths())
        tau = []
        for elev in self.elevations:
            reference = tg(0.0, 0.0, sza, elev)
            usable = reference > 0.02  # deep O2 lines: no water information, weight ~0 anyway
            rows = []
            for path in grid.water_paths():
                ratio = np.where(usable, tg(path / GAS_RUN_AIRMASS, 0.0, sza, elev), 1.0)
                ratio = np.clip(ratio / np.where(usable, reference, 1.0), 1e-6, 1.0)
                rows.append(-np.log(ratio))
            tau.append(np.maximum.accumulate(np.asarray(rows), axis=0))  # monotone in path
        self.water_tau = np.asarray(tau)  # (elevation, path, wavelength)
        k = []  # per cm-atm x airmass; 6S's ozone absorption changes a little with elevation
        for elev in self.elevations:
            reference = tg(0.0, 0.0, sza, elev)
            ratio = tg(0.0, grid.ozone_run, sza, elev) / np.maximum(reference, 1e-6)
            k.append(-np.log(np.clip(ratio, 1e-6, 1.0)) / (grid.ozone_run * GAS_RUN_AIRMASS))
        self.ozone_k = np.asarray(k)  # (elevation, wavelength)
        self.rest = {
            (m, elev): tg(0.0, 0.0, zenith_for_airmass(m), elev)
            for m in grid.gas_airmass
            for elev in self.elevations
        }

    def water(self, path: float, elevation: float) -> np.ndarray:
        """Water vapour transmittance per step for an absorber path wv x airmass (g/cm2)."""
        tau = self.water_tau[self.elevations.index(elevation)]
        x = math.log(path)
        if not self.log_paths[0] - 1e-9 <= x <= self.log_paths[-1] + 1e-9:
            raise ValueError(f"water path {path:g} outside the gas runs")
        i = int(np.clip(np.searchsorted(self.log_paths, x) - 1, 0, len(self.log_paths) - 2))
        frac = (x - self.log_paths[i]) / (self.log_paths[i + 1] - self.log_paths[i])
        return np.exp(-((1 - frac) * tau[i] + frac * tau[i + 1]))

    def ozone(self, amount: float, elevation: float) -> np.ndarray:
        """Ozone transmittance per step for ozone x airmass (cm-atm), Beer's law."""
        return np.exp(-self.ozone_k[self.elevations.index(elevation)] * amount)


def weights(wavelength: np.ndarray, solar: np.ndarray) -> np.ndarray:
    """(satellite x band, step) band weights in the file's satellite/band order."""
    empty = np.zeros_like(wavelength)
    spectrum = Spectrum(wavelength, empty, empty, empty, empty, empty, solar)
    return np.stack([band_weights(b, s, spectrum) for s in SATELLITES for b in BAND_NAMES])


def tables(
    grid: LutGrid, spectra: dict[str, np.ndarray], wavelength: np.ndarray, solar: np.ndarray
) -> dict[str, np.ndarray]:
    """All variables of :data:`VARIABLES`, shaped (satellite, band, *axes)."""
    w = weights(wavelength, solar)
    gas = GasSpectra(grid, spectra)
    shape = (len(SATELLITES), len(BAND_NAMES))
    return {
        "path_reflectance": _path(grid, spectra, gas, w).reshape(*shape, *_path_shape(grid)),
        "gas_transmittance": _gas(grid, gas, w).reshape(*shape, *_gas_shape(grid)),
        **{k: v.reshape(*shape, *v.shape[1:]) for k, v in _scattering(grid, spectra, w).items()},
    }


def _path_shape(grid: LutGrid) -> tuple[int, ...]:
    return tuple(
        len(getattr(grid, name))
        for name in ("aerosol_models", "aot550", "elevation_km", "solar_zenith", "view_zenith",
                     "relative_azimuth", "water_vapour", "ozone")
    )  # fmt: skip


def _gas_shape(grid: LutGrid) -> tuple[int, ...]:
    return (len(grid.gas_water_vapour), len(grid.ozone), len(grid.gas_airmass),
            len(grid.gas_elevation_km))  # fmt: skip


def _aerosol_runs(
    grid: LutGrid,
    spectra: dict[str, np.ndarray],
    row: int,
    elev: float,
    sza: float,
    vza: float,
    raa: float,
) -> np.ndarray:
    """(aerosol model, aot, step) of one cached quantity; AOT 0 is the aerosol-free run."""
    if vza == 0:
        raa = grid.relative_azimuth[0]
    rayleigh = spectra[run_key(Conditions(0.0, REFERENCE_MODEL, 0, 0, sza, vza, raa, elev))][row]
    out = np.empty((len(grid.aerosol_models), len(grid.aot550), rayleigh.size))
    for i, model in enumerate(grid.aerosol_models):
        for j, aot in enumerate(grid.aot550):
            out[i, j] = (
                rayleigh
                if aot == 0
                else spectra[run_key(Conditions(aot, model, 0, 0, sza, vza, raa, elev))][row]
            )
    return out  # fmt: skip


def _path(
    grid: LutGrid, spectra: dict[str, np.ndarray], gas: GasSpectra, w: np.ndarray
) -> np.ndarray:
    out = np.empty((w.shape[0], *_path_shape(grid)))
    for ie, elev in enumerate(grid.elevation_km):
        for isz, sza in enumerate(grid.solar_zenith):
            for iv, vza in enumerate(grid.view_zenith):
                airmass = _sec(sza) + _sec(vza)
                ozone = np.stack([gas.ozone(o3 * airmass, elev) for o3 in grid.ozone])  # (o3, step)
                for ir, raa in enumerate(grid.relative_azimuth):
                    mix = _aerosol_runs(grid, spectra, PATH, elev, sza, vza, raa)
                    rayleigh = mix[:, :1]  # AOT 0 column
                    for iw, wv in enumerate(grid.water_vapour):
                        water = gas.water(0.5 * wv * airmass, elev)
                        no_ozone = rayleigh + (mix - rayleigh) * water  # (aer, aot, step)
                        values = np.einsum("bl,xal,ol->bxao", w, no_ozone, ozone)
                        out[:, :, :, ie, isz, iv, ir, iw, :] = values
    return out


def _gas(grid: LutGrid, gas: GasSpectra, w: np.ndarray) -> np.ndarray:
    out = np.empty((w.shape[0], *_gas_shape(grid)))
    for ie, elev in enumerate(grid.gas_elevation_km):
        for im, m in enumerate(grid.gas_airmass):
            rest = gas.rest[(m, elev)]
            ozone = np.stack([gas.ozone(o3 * m, elev) for o3 in grid.ozone])
            for iw, wv in enumerate(grid.gas_water_vapour):
                total = gas.water(wv * m, elev) * rest * ozone  # (o3, step)
                out[:, iw, :, im, ie] = w @ total.T
    return out


def _scattering(
    grid: LutGrid, spectra: dict[str, np.ndarray], w: np.ndarray
) -> dict[str, np.ndarray]:
    """T(zenith) from the nadir-view runs at each solar zenith node; S from the first of them."""
    vza, raa = grid.view_zenith[0], grid.relative_azimuth[0]
    n_models, n_aot = len(grid.aerosol_models), len(grid.aot550)
    trans = np.empty((w.shape[0], n_models, n_aot, len(grid.elevation_km), len(grid.solar_zenith)))
    spherical = np.empty((w.shape[0], n_models, n_aot, len(grid.elevation_km)))
    for ie, elev in enumerate(grid.elevation_km):
        for isz, sza in enumerate(grid.solar_zenith):
            down = _aerosol_runs(grid, spectra, TDOWN, elev, sza, vza, raa)
            trans[..., ie, isz] = np.einsum("bl,xal->bxa", w, down)
            if isz == 0:
                albedo = _aerosol_runs(grid, spectra, SPHERICAL, elev, sza, vza, raa)
                spherical[..., ie] = np.einsum("bl,xal->bxa", w, albedo)
    return {"transmittance": trans, "spherical_albedo": spherical}
