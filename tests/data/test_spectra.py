"""The measured-spectra library and the repaint of real patches."""

from __future__ import annotations

import numpy as np
import pytest

from s2ac.data.sources import load_spyndex_s2
from s2ac.data.spectra import REFERENCE, library, repaint, unmix


def ndvi(x: np.ndarray) -> np.ndarray:
    return (x[..., 3] - x[..., 2]) / (x[..., 3] + x[..., 2])


def edges(x: np.ndarray) -> np.ndarray:
    """Gradient magnitude summed over bands: where the structure is."""
    dy, dx = np.gradient(x, axis=(0, 1))
    return np.hypot(dy, dx).sum(axis=-1)


def test_library_holds_soils_urban_materials_and_canopies_in_s2_bands():
    lib = library()
    assert len(lib.groups["soil"]) > 4000 and len(lib.groups["built"]) > 800
    assert len(lib.groups["vegetation"]) > 1900
    assert np.median(ndvi(lib.groups["vegetation"])) > 0.7  # green canopies: red edge
    assert np.median(ndvi(lib.groups["soil"])) < 0.25
    # soils redden towards the NIR, urban materials are flat-ish and darker on average
    assert np.median(lib.groups["soil"][:, 2]) > np.median(lib.groups["soil"][:, 0])
    assert np.median(lib.groups["built"].mean(axis=1)) < np.median(lib.groups["soil"].mean(axis=1))


def test_unmixing_recovers_pure_endmembers_and_mixtures():
    pure = np.stack(list(REFERENCE.values()))[None]  # (1, 3, 4)
    fractions, residual = unmix(pure)
    np.testing.assert_allclose(fractions[0], np.eye(3), atol=1e-6)
    np.testing.assert_allclose(residual, 0.0, atol=1e-6)
    mixed = 0.3 * REFERENCE["vegetation"] + 0.7 * REFERENCE["bare"]
    fractions, _ = unmix(mixed[None, None])
    np.testing.assert_allclose(fractions[0, 0], [0.3, 0.7, 0.0], atol=1e-6)


def test_repaint_keeps_the_structure_and_changes_the_spectra():
    patch = load_spyndex_s2()[:128, :128]
    new, draws = repaint(patch, np.random.default_rng(5))
    again, _ = repaint(patch, np.random.default_rng(5))
    np.testing.assert_array_equal(new, again)  # same draw, same bytes
    assert draws["bare"] in {"soil", "built", "npv"}
    assert draws["canopy"] in {"vegetation", "soil", "npv"}
    assert new.shape == patch.shape and new.dtype == np.float32
    assert new.min() >= 0.0 and new.max() <= 1.2
    # the spatial pattern survives (edges stay where they were), the spectra change
    for seed in range(6):
        other, _ = repaint(patch, np.random.default_rng(seed))
        assert np.corrcoef(edges(patch).ravel(), edges(other).ravel())[0, 1] > 0.6
    assert np.abs(new - patch).mean() > 0.01
    means = [repaint(patch, np.random.default_rng(k))[0].mean(axis=(0, 1)) for k in range(8)]
    assert np.ptp(np.stack(means)[:, 2]) > 0.03  # red differs from draw to draw


def test_spyndex_sample_is_surface_reflectance():
    sample = load_spyndex_s2()
    assert sample.shape == (300, 300, 4)
    assert sample.min() > 0 and sample.max() < 0.6
    assert sample[..., 3].mean() > 2 * sample[..., 2].mean()  # vegetated
    assert pytest.approx(float(sample[..., 0].mean()), abs=0.01) == 0.0496
