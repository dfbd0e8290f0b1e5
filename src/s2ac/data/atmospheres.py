"""Atmospheres of the embedded dataset: what training sees, what ``ood`` sees, and their fields.

Each patch draws one :class:`~s2ac.physics.lut.Atmosphere` (aerosol model, geometry, ozone,
satellite and the patch means of AOT550, water vapour and elevation), then smooth random fields
that vary AOT550, water vapour and elevation across the patch (:func:`sample_field`):

* AOT550 and water vapour: ``mean * exp(sigma * z - sigma^2 / 2)`` (log-normal, mean kept),
* elevation: ``mean + std * z``,

where ``z`` is a unit-variance Gaussian random field with correlation ``exp(-d^2 / L^2)`` at
distance ``d`` (correlation length ``L`` in km; :func:`gaussian_field`), all clipped to the
look-up table's range. Parameters: :class:`s2ac.config.AtmosphereConfig`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from s2ac.bands import PIXEL_KM
from s2ac.config import AtmosphereConfig, DataConfig
from s2ac.physics.forward import FieldAtmosphere
from s2ac.physics.lut import Atmosphere, Lut

#: The ``ood`` split's aerosol models: maritime (never in the default training draws) first.
OOD_AEROSOL_MODEL_WEIGHTS = {"maritime": 0.5, "continental": 0.2, "urban": 0.15, "desert": 0.15}
OOD_SOLAR_ZENITH = (50.0, 70.0)


def distribution(config: DataConfig) -> dict[str, object]:
    """The training draws, written into the manifest."""
    a = config.atmosphere
    return {
        "aot550": f"lognormal(median 0.35, sigma 0.6), clipped to [0.03, {config.max_aot550}]",
        "aerosol_model": dict(a.aerosol_models),
        "water_vapour": "uniform(0.5, 5.0) g/cm2",
        "ozone": "uniform(0.25, 0.32) cm-atm",
        "solar_zenith": f"uniform({a.solar_zenith[0]}, {a.solar_zenith[1]}) deg",
        "view_zenith": "uniform(0, 11) deg",
        "relative_azimuth": "uniform(0, 180) deg",
        "elevation_km": "uniform(0, 1) km",
        "satellite": "S2A or S2B, equally likely",
        "within_patch": field_description(a),
    }


def ood_distribution() -> dict[str, object]:
    return {
        "aot550": "uniform(0.5 * max_aot550, LUT maximum)",
        "aerosol_model": OOD_AEROSOL_MODEL_WEIGHTS,
        "water_vapour": "uniform(LUT minimum, LUT maximum) g/cm2",
        "ozone": "uniform(0.25, 0.45) cm-atm",
        "solar_zenith": f"uniform{OOD_SOLAR_ZENITH} deg",
        "view_zenith": "uniform(0, 12) deg",
        "relative_azimuth": "uniform(0, 180) deg",
        "elevation_km": "uniform(0.8, LUT maximum) km",
        "satellite": "S2A or S2B, equally likely",
        "within_patch": "as training",
    }


def field_description(a: AtmosphereConfig) -> dict[str, object]:
    return {
        "aot550": f"mean * exp({a.aot_log_sigma} z - sigma^2/2), L = {a.aot_correlation_km} km",
        "water_vapour": f"mean * exp({a.water_vapour_log_sigma} z - sigma^2/2), "
        f"L = {a.water_vapour_correlation_km} km",
        "elevation_km": f"mean + {a.elevation_std_km} z, L = {a.elevation_correlation_km} km",
        "z": "unit Gaussian random field, correlation exp(-d^2/L^2)",
        "control_step_px": a.control_step_px,
        "adjacency": "6S environment functions (s2ac.physics.adjacency)" if a.adjacency else "off",
    }


def choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One name drawn with the given (unnormalised) weights."""
    p = np.array(list(weights.values()), dtype=np.float64)
    return list(weights)[int(rng.choice(len(weights), p=p / p.sum()))]


def sample_atmosphere(rng: np.random.Generator, config: DataConfig) -> Atmosphere:
    """Draw one training atmosphere and geometry (see :func:`distribution`)."""
    a = config.atmosphere
    return Atmosphere(
        aot550=float(np.clip(rng.lognormal(np.log(0.35), 0.6), 0.03, config.max_aot550)),
        aerosol_model=choose(rng, a.aerosol_models),
        water_vapour=float(rng.uniform(0.5, 5.0)),
        ozone=float(rng.uniform(0.25, 0.32)),
        solar_zenith=float(rng.uniform(*a.solar_zenith)),
        view_zenith=float(rng.uniform(0.0, 11.0)),
        relative_azimuth=float(rng.uniform(0.0, 180.0)),
        elevation_km=float(rng.uniform(0.0, 1.0)),
        satellite=str(rng.choice(["S2A", "S2B"])),
    )


def sample_ood_atmosphere(rng: np.random.Generator, config: DataConfig, lut: Lut) -> Atmosphere:
    """Draw one ``ood`` atmosphere (see :func:`ood_distribution`)."""
    top = {name: lut.axes[name].nodes[-1] for name in ("aot550", "elevation_km")}
    wv = lut.axes["water_vapour"].nodes
    return Atmosphere(
        aot550=float(rng.uniform(0.5 * config.max_aot550, top["aot550"])),
        aerosol_model=choose(rng, OOD_AEROSOL_MODEL_WEIGHTS),
        water_vapour=float(rng.uniform(wv[0], wv[-1])),
        ozone=float(rng.uniform(0.25, 0.45)),
        solar_zenith=float(rng.uniform(*OOD_SOLAR_ZENITH)),
        view_zenith=float(rng.uniform(0.0, 12.0)),
        relative_azimuth=float(rng.uniform(0.0, 180.0)),
        elevation_km=float(rng.uniform(0.8, top["elevation_km"])),
        satellite=str(rng.choice(["S2A", "S2B"])),
    )


def gaussian_field(
    rng: np.random.Generator, nodes: int, spacing_km: float, correlation_km: float
) -> np.ndarray:
    """A (nodes, nodes) sample of a stationary unit-variance Gaussian random field with
    correlation ``exp(-d^2 / L^2)``: white noise smoothed by a Gaussian of sigma ``L / 2``
    (the autocorrelation of that kernel), with a margin of 3 sigma so the edges are stationary too.
    """
    sigma = correlation_km / 2.0 / spacing_km  # in nodes
    margin = math.ceil(3 * sigma) + 1
    size = nodes + 2 * margin
    impulse = np.zeros((2 * margin + 1, 2 * margin + 1))
    impulse[margin, margin] = 1.0
    norm = math.sqrt(float(np.sum(gaussian_filter(impulse, sigma, mode="constant") ** 2)))
    noise = rng.standard_normal((size, size))
    smooth = gaussian_filter(noise, sigma, mode="constant") / norm
    return smooth[margin : margin + nodes, margin : margin + nodes]


def sample_field(
    rng: np.random.Generator, base: Atmosphere, size: int, config: AtmosphereConfig, lut: Lut
) -> FieldAtmosphere:
    """Fields of AOT550, water vapour and elevation over a ``size`` x ``size`` patch."""
    step = config.control_step_px
    nodes = -(-(size - 1) // step) + 1
    spacing = step * PIXEL_KM

    def lognormal(mean: float, sigma: float, correlation: float) -> np.ndarray:
        z = gaussian_field(rng, nodes, spacing, correlation)
        return mean * np.exp(sigma * z - sigma**2 / 2)

    def clip(name: str, values: np.ndarray) -> np.ndarray:
        axis = lut.axes[name].nodes
        return np.clip(values, axis[0], axis[-1])

    aot = lognormal(base.aot550, config.aot_log_sigma, config.aot_correlation_km)
    wv = lognormal(base.water_vapour, config.water_vapour_log_sigma,
                   config.water_vapour_correlation_km)  # fmt: skip
    z = gaussian_field(rng, nodes, spacing, config.elevation_correlation_km)
    elevation = base.elevation_km + config.elevation_std_km * z
    return FieldAtmosphere(
        base,
        clip("aot550", aot),
        clip("water_vapour", wv),
        clip("elevation_km", elevation),
        step,
    )
