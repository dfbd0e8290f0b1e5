"""Dark-object retrieval of the aerosol load: per image, the AOT550 the darkest pixels allow.

Dark-object subtraction (the ``dos`` baseline) takes the darkest pixels' TOA, minus a 1 %
surface, as haze and subtracts it; it ignores transmittance and the geometry and so cannot
correct bright surfaces, but it adapts to each image's air and needs nothing else. This is the
same idea inverted through the 6S table (the dark-object method of Kaufman & Sendra 1988): per
aerosol model and visible band, the AOT550 at which the band's darkest pixels (its
:data:`DARK_QUANTILE`) invert to a dark object's reflectance, under the image's own geometry.

Why it is in the physics-informed generator (``train.atmosphere_prior: dark_object``): a network
that estimates AOT from features learns the training atmospheres and does not extrapolate to
loads, sun angles or ground heights it never saw (measured on ``ood``: AOT off by 0.15), whereas
this estimate follows the physics anywhere in the table. The network then learns only how the
atmosphere departs from it. The per-band spread of the retrieved AOT says how well an aerosol
model's spectral shape fits the image's haze, a cue for the model.

:func:`dark_object_aot` is the NumPy reference; :class:`s2ac.model.retrieval.DarkObjectAot` is
the same retrieval in TensorFlow ops, inside the generator (tested equal).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from s2ac.physics.corrections import CLIMATOLOGY, DARK_OBJECT_REFLECTANCE
from s2ac.physics.lut import Atmosphere, Lut

#: The dark end of each band: its 0.1th percentile, as the ``dos`` baseline (DOS1) uses.
DARK_QUANTILE = 0.001
#: AOT550 nodes searched (evenly over the table's AOT range).
SEARCH_NODES = 49
#: Bands the retrieval uses (B2, B3, B4): in the NIR even water is not dark enough to say much.
VISIBLE = 3


def dark_quantiles(toa: np.ndarray, quantile: float = DARK_QUANTILE) -> np.ndarray:
    """Each band's dark end ``(..., 4)`` of images ``(..., H, W, 4)``: the pixel at rank
    ``int(quantile * H * W)`` of the sorted band (no interpolation, as the TensorFlow twin)."""
    pixels = toa.reshape(*toa.shape[:-3], -1, toa.shape[-1])
    rank = min(pixels.shape[-2] - 1, int(quantile * pixels.shape[-2]))
    return np.sort(pixels, axis=-2)[..., rank, :]


def search_grid(lut: Lut, nodes: int = SEARCH_NODES) -> np.ndarray:
    """The AOT550 values searched: ``nodes`` evenly over the table's range."""
    axis = lut.axes["aot550"].nodes
    return np.linspace(axis[0], axis[-1], nodes)


def crossing(values: np.ndarray, grid: np.ndarray, target: float) -> np.ndarray:
    """Where ``values`` (``(..., G)``, decreasing along the grid) first fall below ``target``,
    linearly interpolated; the grid's ends when they never do or always do."""
    below = values < target
    first = np.argmax(below, axis=-1)
    first = np.where(below.any(axis=-1), first, len(grid) - 1)
    i = np.maximum(first, 1)
    v0 = np.take_along_axis(values, (i - 1)[..., None], -1)[..., 0]
    v1 = np.take_along_axis(values, i[..., None], -1)[..., 0]
    frac = np.clip((v0 - target) / np.where(v0 == v1, 1.0, v0 - v1), 0.0, 1.0)
    found = grid[i - 1] + frac * (grid[i] - grid[i - 1])
    found = np.where(first == 0, grid[0], found)
    return np.where(below.any(axis=-1), found, grid[-1])


def spread(found: np.ndarray, high: float) -> np.ndarray:
    """Per aerosol model, how badly it explains the haze: the AOT spread (max - min) over the
    visible bands of :func:`dark_object_aot`'s ``(..., models, 3)``, plus the table's AOT
    range for a model that finds no AOT in some band (the search ran into ``high``: its spread
    of 0 there means nothing). :class:`s2ac.model.physics_generator.AroundPrior` is the twin."""
    failed = found.max(axis=-1) >= high - 1e-4
    return np.ptp(found, axis=-1) + failed * high


def dark_object_aot(
    toa: np.ndarray,
    geometry: Atmosphere,
    lut: Lut | None = None,
    *,
    target: float = DARK_OBJECT_REFLECTANCE,
    water_vapour: float = CLIMATOLOGY.water_vapour,
    nodes: int = SEARCH_NODES,
) -> np.ndarray:
    """AOT550 ``(models, 3)`` per aerosol model of the table and visible band at which the
    band's dark end of ``toa`` ``(H, W, 4)`` inverts (Lambertian) to ``target``.

    Only ``geometry``'s geometry, elevation, ozone and satellite are used; water vapour (unknown
    from these bands) is ``water_vapour``.
    """
    lut = lut or Lut.load()
    dark = dark_quantiles(np.asarray(toa, dtype=np.float64))
    grid = search_grid(lut, nodes)
    found = []
    for model in lut.aerosol_models:
        atmospheres = [
            replace(geometry, aerosol_model=model, aot550=float(a), water_vapour=water_vapour)
            for a in grid
        ]
        c = lut.coefficients_many(atmospheres)
        y = (dark - c["path_reflectance"]) / (c["gas_transmittance"] * c["t_down"] * c["t_up"])
        rho = y / (1.0 + c["spherical_albedo"] * y)  # (G, 4)
        found.append(crossing(rho[:, :VISIBLE].T, grid, target))
    return np.stack(found)
