"""What each split of a dataset holds: land-cover mix, distinct ground area, atmosphere ranges.

Written into the manifest by ``s2ac data synth`` so a reader can see, without opening a shard,
whether the splits cover the kinds of ground and air the model will meet. Land-cover classes are
per pixel of the surface reflectance (B2, B3, B4, B8), first match wins:

* ``water``: NDWI = (B3 - B8) / (B3 + B8) > 0
* ``dense_vegetation``: NDVI = (B8 - B4) / (B8 + B4) >= 0.5 (forest, irrigated crops)
* ``sparse_vegetation``: NDVI >= 0.2 (cropland, grassland, shrubs)
* ``bright_bare``: mean visible reflectance >= 0.15 (desert, sand, bright roofs, bare soil)
* ``dark_bare``: the rest (dark soil, asphalt, built-up, burnt or wet ground)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s2ac.bands import PIXEL_KM

LAND_COVER = ("water", "dense_vegetation", "sparse_vegetation", "bright_bare", "dark_bare")


def land_cover(surface: np.ndarray) -> np.ndarray:
    """Class index (into :data:`LAND_COVER`) of every pixel of a (..., 4) surface."""
    blue, green, red, nir = (surface[..., k].astype(np.float64) for k in range(4))
    eps = 1e-6
    ndwi = (green - nir) / (green + nir + eps)
    ndvi = (nir - red) / (nir + red + eps)
    visible = (blue + green + red) / 3
    classes = np.full(surface.shape[:-1], 4, dtype=np.int8)
    classes[visible >= 0.15] = 3
    classes[ndvi >= 0.2] = 2
    classes[ndvi >= 0.5] = 1
    classes[ndwi > 0] = 0
    return classes


def split_report(samples: list[dict], grounds: dict[str, Any], size: int) -> dict[str, Any]:
    """Per split: land-cover shares, distinct km^2 per source, atmosphere ranges, sources.

    ``grounds`` maps source name -> object with ``surface`` (H, W, 4); ``samples`` are the
    manifest's sample entries (split, source, row, col, atmosphere, field_ranges).
    """
    report: dict[str, Any] = {}
    for split in sorted({s["split"] for s in samples}):
        chosen = [s for s in samples if s["split"] == split]
        counts = np.zeros(len(LAND_COVER), dtype=np.int64)
        footprints: dict[str, np.ndarray] = {}
        for s in chosen:
            surface = grounds[s["source"]].surface
            window = (slice(s["row"], s["row"] + size), slice(s["col"], s["col"] + size))
            if "land_cover_px" in s:  # counted on the surface as written (after any repaint)
                counts += np.asarray(s["land_cover_px"], dtype=np.int64)
            else:
                counts += np.bincount(
                    land_cover(surface[window]).ravel(), minlength=len(LAND_COVER)
                )
            mask = footprints.setdefault(s["source"], np.zeros(surface.shape[:2], dtype=bool))
            mask[window] = True
        report[split] = {
            "patches": len(chosen),
            "sources": {name: sum(s["source"] == name for s in chosen) for name in footprints},
            "repainted": sum("repaint" in s for s in chosen),
            "land_cover": {
                name: round(float(c / counts.sum()), 4)
                for name, c in zip(LAND_COVER, counts, strict=True)
            },
            "distinct_km2": {
                name: round(float(mask.sum()) * PIXEL_KM**2, 2) for name, mask in footprints.items()
            },
            "atmosphere": _ranges(chosen),
        }
    return report


def _ranges(samples: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("aot550", "water_vapour", "elevation_km"):
        lows = [s.get("field_ranges", {}).get(name, [s["atmosphere"][name]] * 2)[0]
                for s in samples]  # fmt: skip
        highs = [s.get("field_ranges", {}).get(name, [s["atmosphere"][name]] * 2)[1]
                 for s in samples]  # fmt: skip
        out[name] = [round(min(lows), 4), round(max(highs), 4)]
    for name in ("solar_zenith", "view_zenith", "ozone"):
        values = [s["atmosphere"][name] for s in samples]
        out[name] = [round(min(values), 4), round(max(values), 4)]
    models = [s["atmosphere"]["aerosol_model"] for s in samples]
    out["aerosol_model"] = {m: models.count(m) for m in sorted(set(models))}
    return out
