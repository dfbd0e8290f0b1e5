"""The adjacency effect: light reflected by the surroundings and scattered into the view.

6S's model of a non-uniform Lambertian surface (target reflectance rho_s, environment
reflectance rho_e, per band)::

    rho_toa = rho_path + T_g * T_down * (t_dir * rho_s + t_dif * rho_e) / (1 - S * rho_e)

``t_dir = exp(-tau / cos(view zenith))`` is the direct upward transmittance (tau: Rayleigh +
aerosol optical depth) and ``t_dif = T_up - t_dir`` the diffuse one. A uniform surface
(rho_e = rho_s) gives back the Lambertian coupling of :mod:`s2ac.physics.lut`.

The environment reflectance is the surface seen through the atmospheric point-spread function
(PSF). 6S uses two radial environment functions, the share of the environment signal coming from
within a radius r (km), for a sensor above the atmosphere::

    F_R(r) = 1 - (0.930 exp(-0.08 r) + 0.070 exp(-1.10 r))     Rayleigh
    F_A(r) = 1 - (0.448 exp(-0.27 r) + 0.552 exp(-2.83 r))     aerosol

mixed by the Rayleigh and aerosol diffuse upward transmittances t_R, t_A:
``F = (t_R F_R + t_A F_A) / (t_R + t_A)``. Half of the aerosol environment signal comes from
within 0.36 km, half of the Rayleigh one from within 7.8 km. :func:`environment` convolves a
scene with both PSFs (truncated at :data:`PSF_RADIUS_KM`; the weight beyond it goes to the scene
mean) and :func:`mix` weights the two per pixel. Against direct 6S runs with a disc target
(``HeterogeneousLambertian``) this reproduces 6S's TOA reflectance to 2e-4
(``tests/physics/test_adjacency.py``).

The transmittances it needs (``direct_up``, ``diffuse_rayleigh_up``, ``diffuse_aerosol_up``) are
extra variables of the look-up table, built by :func:`build_adjacency_tables` from ordinary 6S band
runs (6S's optical depths and Rayleigh/aerosol scattering transmittances).
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from s2ac.bands import BAND_NAMES, SATELLITES
from s2ac.console import log, track
from s2ac.physics.grid import DEFAULT_GRID, REFERENCE_MODEL, LutGrid
from s2ac.physics.sixs import Conditions

#: 6S environment functions (satellite-level sensor): F(r) = 1 - (a0 exp(-b0 r) + a1 exp(-b1 r)).
RAYLEIGH_ENV = (0.930, 0.08, 0.070, 1.10)
AEROSOL_ENV = (0.448, 0.27, 0.552, 2.83)
#: The PSFs are convolved out to this radius; the weight beyond goes to the scene mean.
PSF_RADIUS_KM = 2.0
#: Solar zenith of the runs (upward transmittances do not depend on it).
_RUN_SOLAR_ZENITH = 30.0

VARIABLES: dict[str, dict[str, object]] = {
    name: {
        "axes": ["satellite", "band", "aerosol_model", "aot550", "elevation_km", "view_zenith"],
        "units": "1",
        "values": "identity",
        "description": description,
    }
    for name, description in (
        ("direct_up", "direct upward transmittance exp(-tau / cos(view zenith)), tau = 6S's "
         "total (Rayleigh + aerosol) optical depth"),
        ("diffuse_rayleigh_up", "diffuse upward transmittance of a Rayleigh-only atmosphere: "
         "weight of 6S's Rayleigh environment function"),
        ("diffuse_aerosol_up", "diffuse upward transmittance of an aerosol-only atmosphere: "
         "weight of 6S's aerosol environment function"),
    )
}  # fmt: skip


def all_environments() -> tuple[tuple, tuple]:
    """The Rayleigh and the aerosol environment function coefficients, in that order."""
    return RAYLEIGH_ENV, AEROSOL_ENV


def environment_share(radius_km: np.ndarray | float, coefficients: tuple) -> np.ndarray:
    """6S's environment function F(r): share of the environment signal from within r km."""
    a0, b0, a1, b1 = coefficients
    r = np.asarray(radius_km, dtype=np.float64)
    return 1.0 - (a0 * np.exp(-b0 * r) + a1 * np.exp(-b1 * r))


def psf_kernel(coefficients: tuple, pixel_km: float, radius_km: float = PSF_RADIUS_KM):
    """Discrete PSF on a square grid out to ``radius_km``. Pixels at the same distance share
    the share F gives to the annulus between the midpoints to the neighbouring distances, so the
    kernel sums to F(radius) exactly and a disc of radius r around the centre holds F(r)."""
    half = math.ceil(radius_km / pixel_km - 1e-9)
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    r = np.hypot(x, y) * pixel_km
    inside = r <= radius_km
    distances, ring = np.unique(np.round(r[inside], 9), return_inverse=True)
    bounds = np.concatenate([[0.0], (distances[1:] + distances[:-1]) / 2, [radius_km]])
    shares = np.diff(environment_share(bounds, coefficients))
    counts = np.bincount(ring)
    kernel = np.zeros_like(r)
    kernel[inside] = shares[ring] / counts[ring]
    return kernel


@cache
def _kernel_spectrum(coefficients: tuple, pixel_km: float, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 of the PSF kernel zero-padded to ``shape``, centred at the origin (cached)."""
    from scipy import fft

    kernel = psf_kernel(coefficients, pixel_km)
    half = kernel.shape[0] // 2
    padded = np.zeros(shape)
    padded[: kernel.shape[0], : kernel.shape[1]] = kernel
    padded = np.roll(padded, (-half, -half), axis=(0, 1))  # centre -> (0, 0): no shift
    return fft.rfft2(padded)


def environment(surface: np.ndarray, pixel_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Rayleigh and aerosol environment reflectances of a scene (H, W, bands), same shape.

    Convolution out to :data:`PSF_RADIUS_KM` (the scene mirrored at its borders, as often as
    needed), plus the share beyond it times the scene mean per band. One forward FFT of the
    mirrored scene serves both PSFs, whose spectra are cached per size.
    """
    from scipy import fft

    surface = np.asarray(surface, dtype=np.float64)
    height, width = surface.shape[:2]
    pad = math.ceil(PSF_RADIUS_KM / pixel_km - 1e-9)
    padded = np.pad(surface, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    shape = (fft.next_fast_len(padded.shape[0] + pad, real=True),
             fft.next_fast_len(padded.shape[1] + pad, real=True))  # fmt: skip
    spectrum = fft.rfft2(padded, s=shape, axes=(0, 1), workers=-1)
    mean = surface.mean(axis=(0, 1))
    out = []
    for coefficients in all_environments():
        kernel = _kernel_spectrum(coefficients, pixel_km, shape)[..., None]
        near = fft.irfft2(spectrum * kernel, s=shape, axes=(0, 1), workers=-1)
        near = near[pad : pad + height, pad : pad + width]
        far = 1.0 - environment_share(PSF_RADIUS_KM, coefficients)
        out.append((near + far * mean).astype(np.float32))
    return out[0], out[1]


def mix(env_rayleigh, env_aerosol, diffuse_rayleigh, diffuse_aerosol):
    """Environment reflectance: 6S's two environment signals weighted by their transmittances."""
    total = diffuse_rayleigh + diffuse_aerosol
    return (diffuse_rayleigh * env_rayleigh + diffuse_aerosol * env_aerosol) / total


def surface_reflectance(toa, coefficients, env):
    """Surface reflectance from TOA, per-pixel coefficients (``path_reflectance``,
    ``gas_transmittance``, ``t_down``, ``t_up``, ``spherical_albedo``, ``direct_up``) and the
    environment reflectance: the module docstring's equation solved for rho_s. Plain arithmetic,
    so NumPy arrays and TensorFlow tensors both work."""
    c = coefficients
    surface_term = (toa - c["path_reflectance"]) / (c["gas_transmittance"] * c["t_down"])
    coupled = surface_term * (1.0 - c["spherical_albedo"] * env)
    return (coupled - (c["t_up"] - c["direct_up"]) * env) / c["direct_up"]


# --- table build ---------------------------------------------------------------------------------


def _conditions(grid: LutGrid) -> list[Conditions]:
    runs = []
    for aot in grid.aot550:
        for model in (REFERENCE_MODEL,) if aot == 0 else grid.aerosol_models:
            for elevation in grid.elevation_km:
                for vza in grid.view_zenith:
                    runs.append(
                        Conditions(aot, model, 0.0, 0.0, _RUN_SOLAR_ZENITH, vza, 0.0, elevation)
                    )
    return runs


def _run(conditions: Conditions) -> np.ndarray:
    """One atmosphere: (satellite, band, 3) direct, diffuse Rayleigh, diffuse aerosol (upward)."""
    from s2ac.physics.sixs import _band_wavelength, _wrapper

    mu = math.cos(math.radians(conditions.view_zenith))
    out = np.zeros((len(SATELLITES), len(BAND_NAMES), 3))
    for i, satellite in enumerate(SATELLITES):
        for j, band in enumerate(BAND_NAMES):
            s = _wrapper(conditions, _band_wavelength(band, satellite))
            s.run()
            depth, trans = s.outputs.rat["optical_depth_total"], s.outputs.trans
            out[i, j] = (
                math.exp(-float(depth.total) / mu),
                float(trans["rayleigh_scattering"].upward) - math.exp(-float(depth.rayleigh) / mu),
                float(trans["aerosol_scattering"].upward) - math.exp(-float(depth.aerosol) / mu),
            )
    return out


def adjacency_tables(grid: LutGrid = DEFAULT_GRID, workers: int = 2) -> dict[str, np.ndarray]:
    """Run 6S (8 band runs per atmosphere) and return the :data:`VARIABLES` tables."""
    runs = _conditions(grid)
    log.info("adjacency tables: %d atmospheres x 8 band runs on %d worker(s)", len(runs), workers)
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(track(pool.map(_run, runs), "6S band runs", total=len(runs)))
    else:
        results = [_run(c) for c in track(runs, "6S band runs", total=len(runs))]
    by_key = {(c.aot550, c.aerosol_model, c.elevation_km, c.view_zenith): r
              for c, r in zip(runs, results, strict=True)}  # fmt: skip
    shape = (len(SATELLITES), len(BAND_NAMES), len(grid.aerosol_models), len(grid.aot550),
             len(grid.elevation_km), len(grid.view_zenith), 3)  # fmt: skip
    table = np.zeros(shape)
    for m, model in enumerate(grid.aerosol_models):
        for a, aot in enumerate(grid.aot550):
            for e, elevation in enumerate(grid.elevation_km):
                for v, vza in enumerate(grid.view_zenith):
                    key = (aot, REFERENCE_MODEL if aot == 0 else model, elevation, vza)
                    table[:, :, m, a, e, v] = by_key[key]
    return {name: table[..., k] for k, name in enumerate(VARIABLES)}


def add_adjacency_tables(lut_path: str | Path, grid: LutGrid = DEFAULT_GRID, workers: int = 2):
    """Add (or replace) the adjacency variables in a look-up table file, atomically."""
    lut_path = Path(lut_path)
    tables = adjacency_tables(grid, workers)
    with np.load(lut_path, allow_pickle=False) as data:
        arrays = {name: np.asarray(data[name]) for name in data.files}
    metadata = json.loads(str(arrays.pop("metadata")))
    metadata["variables"] = {**metadata["variables"], **VARIABLES}
    metadata["adjacency_runs"] = len(_conditions(grid)) * len(SATELLITES) * len(BAND_NAMES)
    from s2ac.physics.build import _write  # the table's one atomic writer (build imports us)

    _write(lut_path, arrays | tables, metadata)
    return lut_path
