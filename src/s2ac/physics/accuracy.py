"""Measure a look-up table against direct 6S at random off-grid atmospheres.

Why: the table's accuracy claim (``physics/data/README.md``) must be reproducible, and any
rebuilt table must be checked the same way. Each random atmosphere costs one 6S spectral run,
which gives the exact 6S band values of all 8 band/satellite pairs (same weighting as a 6S band
run), so the reference is 6S's own apparent reflectance and its own Lambertian correction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2ac.bands import BAND_NAMES, SATELLITES
from s2ac.physics.band_tables import PATH, SPHERICAL, TDOWN, TG, TUP, weights
from s2ac.physics.build import execute_runs
from s2ac.physics.lut import MAX_SCATTERING_ANGLE, Atmosphere, Lut
from s2ac.physics.sixs import Conditions

SURFACES = (0.02, 0.1, 0.3, 0.6)
NUMERIC = ("aot550", "water_vapour", "ozone", "solar_zenith", "view_zenith", "elevation_km")


def random_conditions(lut: Lut, points: int, seed: int) -> list[Conditions]:
    """Atmospheres drawn uniformly inside the table's grid (all parameters, all aerosol models)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(points):
        v = {n: float(rng.uniform(lut.axes[n].nodes[0], lut.axes[n].nodes[-1])) for n in NUMERIC}
        model = str(rng.choice(lut.aerosol_models))
        raa = float(rng.uniform(0.0, 180.0))
        values = (v["water_vapour"], v["ozone"], v["solar_zenith"], v["view_zenith"], raa)
        out.append(Conditions(v["aot550"], model, *values, v["elevation_km"]))
    return out


def _errors(lut: Lut, c: Conditions, data: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """(forward, inverse, T_g-applied-twice) errors, each (satellite x band, surface)."""
    surfaces = np.asarray(SURFACES)
    tg, down, up, albedo, path = (data[i].astype(float) for i in (TG, TDOWN, TUP, SPHERICAL, PATH))
    # 6S's apparent reflectance, step by step as 6S integrates it (romeas2 in 6SV1.1 main.f).
    coupled = surfaces[:, None] / (1 - surfaces[:, None] * albedo)
    toa = (path + tg * down * up * coupled) @ w.T  # (surface, sat x band)
    band = {k: w @ v for k, v in zip("gdusp", (tg, down, up, albedo, path), strict=True)}
    y = (toa - band["p"]) / (band["g"] * band["d"] * band["u"])  # 6S's xa/xb/xc correction
    surface_6s = y / (1 + band["s"] * y)
    forward, inverse, twice = (np.empty((len(SATELLITES) * 4, len(SURFACES))) for _ in range(3))
    for i, satellite in enumerate(SATELLITES):
        a = Atmosphere(
            c.aot550, c.aerosol_model, c.water_vapour, c.ozone, c.solar_zenith, c.view_zenith,
            c.relative_azimuth, c.elevation_km, satellite,
        )  # fmt: skip
        rows = slice(4 * i, 4 * i + 4)
        ours = lut.forward(np.repeat(surfaces[:, None], 4, axis=1), a)  # (surface, band)
        forward[rows] = (ours - toa[:, rows]).T
        inverse[rows] = (lut.inverse(toa[:, rows], a) - surface_6s[:, rows]).T
        k = lut.coefficients(a)
        gas_on_path = k["path_reflectance"] * (k["gas_transmittance"] - 1)
        twice[rows] = (ours + gas_on_path - toa[:, rows]).T
    return forward, inverse, twice


def measure_accuracy(
    lut_path: str | Path | None = None, points: int = 200, seed: int = 0, workers: int = 2
) -> dict[str, object]:
    """Errors of ``forward`` (vs 6S apparent reflectance) and ``inverse`` (vs 6S's Lambertian
    correction of that reflectance) at ``points`` random atmospheres x 8 band/satellite pairs x
    :data:`SURFACES`; split into the validity domain (scattering angle <= 175 deg) and the rest."""
    lut = Lut.load(lut_path)
    conditions = random_conditions(lut, points, seed)
    runs = [(str(i), c) for i, c in enumerate(conditions)]
    results = {
        int(key): (wl, solar, data) for key, wl, solar, data in execute_runs(runs, workers, 4)
    }
    wavelength, solar, _ = results[0]
    w = weights(wavelength, solar)
    errors = [_errors(lut, c, results[i][2], w) for i, c in enumerate(conditions)]
    forward, inverse, twice = (np.abs(np.stack(e)) for e in zip(*errors, strict=True))
    angles = np.array([_atmosphere(c).scattering_angle for c in conditions])
    inside = angles <= MAX_SCATTERING_ANGLE

    def per_band(values: np.ndarray, stat) -> dict[str, float]:
        by_band = values.reshape(values.shape[0], len(SATELLITES), 4, -1)
        return {b: round(float(stat(by_band[:, :, j])), 5) for j, b in enumerate(BAND_NAMES)}

    worst = int(np.argmax(forward.max(axis=(1, 2))))
    models = np.array([c.aerosol_model for c in conditions])
    by_model = {
        m: round(float(forward[inside & (models == m)].max()), 5)
        for m in lut.aerosol_models
        if (inside & (models == m)).any()
    }
    return {
        "points": points,
        "seed": seed,
        "surfaces": list(SURFACES),
        "points_within_domain": int(inside.sum()),
        "forward_max": per_band(forward[inside], np.max),
        "forward_mean": per_band(forward[inside], np.mean),
        "inverse_max": per_band(inverse[inside], np.max),
        "inverse_mean": per_band(inverse[inside], np.mean),
        "forward_max_by_model": by_model,
        "share_within_0.002": round(float(np.mean(forward[inside].max(axis=(1, 2)) < 0.002)), 4),
        "gas_twice_max": per_band(twice[inside], np.max),
        "gas_twice_mean": per_band(twice[inside], np.mean),
        "near_backscatter_forward_max": round(float(forward[~inside].max()), 5)
        if (~inside).any()
        else None,
        "worst_point": {
            **conditions[worst].__dict__,
            "forward_error": round(float(forward[worst].max()), 5),
        },
    }


def _atmosphere(c: Conditions) -> Atmosphere:
    return Atmosphere(
        c.aot550, c.aerosol_model, c.water_vapour, c.ozone, c.solar_zenith, c.view_zenith,
        c.relative_azimuth, c.elevation_km,
    )  # fmt: skip
