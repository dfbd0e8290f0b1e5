"""Land-cover classes and the per-split report."""

from __future__ import annotations

import numpy as np
import pytest

from s2ac.data.report import LAND_COVER, land_cover, split_report


def spectrum(blue: float, green: float, red: float, nir: float) -> np.ndarray:
    return np.array([[[blue, green, red, nir]]])


@pytest.mark.parametrize(
    ("surface", "expected"),
    [
        (spectrum(0.05, 0.06, 0.03, 0.01), "water"),
        (spectrum(0.03, 0.06, 0.03, 0.40), "dense_vegetation"),
        (spectrum(0.06, 0.09, 0.10, 0.22), "sparse_vegetation"),
        (spectrum(0.25, 0.32, 0.40, 0.45), "bright_bare"),
        (spectrum(0.06, 0.07, 0.08, 0.10), "dark_bare"),
    ],
)
def test_land_cover_classes(surface: np.ndarray, expected: str):
    assert LAND_COVER[int(land_cover(surface)[0, 0])] == expected


class _Ground:
    def __init__(self, surface: np.ndarray) -> None:
        self.surface = surface


def test_report_counts_distinct_area_once_and_mixes_classes():
    surface = np.zeros((100, 100, 4))
    surface[:, :50] = [0.03, 0.06, 0.03, 0.40]  # vegetation | water
    surface[:, 50:] = [0.05, 0.06, 0.03, 0.01]
    atmosphere = {"aot550": 0.2, "water_vapour": 2, "elevation_km": 0, "solar_zenith": 30,
                  "view_zenith": 5, "ozone": 0.3, "aerosol_model": "urban"}  # fmt: skip
    samples = [
        {"split": "train", "source": "a", "row": 0, "col": 0, "atmosphere": atmosphere},
        {"split": "train", "source": "a", "row": 0, "col": 0, "atmosphere": atmosphere},
        {"split": "train", "source": "a", "row": 0, "col": 50, "atmosphere": atmosphere,
         "field_ranges": {"aot550": [0.1, 0.5]}},
    ]  # fmt: skip
    report = split_report(samples, {"a": _Ground(surface)}, 50)["train"]
    assert report["distinct_km2"] == {"a": 0.5}  # two distinct 50x50 windows of 10 m pixels
    assert report["land_cover"]["dense_vegetation"] == pytest.approx(2 / 3, abs=1e-3)
    assert report["land_cover"]["water"] == pytest.approx(1 / 3, abs=1e-3)
    assert report["atmosphere"]["aot550"] == [0.1, 0.5]
    assert report["atmosphere"]["aerosol_model"] == {"urban": 3}
