"""Tiling a scene into full-size patches that cover every pixel (32x32 patches)."""

from __future__ import annotations

import numpy as np
import pytest

from s2ac.data.tiling import extract_patches, patch_nan_fraction, patch_origins


def test_origins_cover_a_70x50_image_with_full_patches_inside():
    origins = patch_origins(70, 50, 32, 32)
    # rows 0, 32, then 38 (shifted back inside); cols 0, then 18
    assert origins == [(0, 0), (0, 18), (32, 0), (32, 18), (38, 0), (38, 18)]
    covered = np.zeros((70, 50), dtype=int)
    for row, col in origins:
        assert 0 <= row <= 70 - 32 and 0 <= col <= 50 - 32
        covered[row : row + 32, col : col + 32] += 1
    assert covered.min() >= 1


def test_origins_with_overlap_and_exact_fit():
    assert patch_origins(64, 64, 32, 32) == [(0, 0), (0, 32), (32, 0), (32, 32)]
    assert [r for r, _ in patch_origins(64, 32, 32, 16)] == [0, 16, 32]
    with pytest.raises(ValueError, match="stride"):
        patch_origins(64, 64, 32, 33)


def test_extract_patches_matches_slices():
    image = np.arange(70 * 50 * 4, dtype=np.float32).reshape(70, 50, 4)
    patches, origins = extract_patches(image, 32, 32)
    assert patches.shape == (6, 32, 32, 4) and patches.dtype == np.float32
    for patch, (row, col) in zip(patches, origins, strict=True):
        np.testing.assert_array_equal(patch, image[row : row + 32, col : col + 32])
    assert not np.isnan(patches).any()


def test_small_image_is_padded_with_nan_and_nodata_becomes_nan():
    image = np.ones((20, 40, 4), dtype=np.uint16) * 7
    image[0, 0, 2] = 0
    patches, origins = extract_patches(image, 32, 32, nodata=0)
    assert origins == [(0, 0), (0, 8)]
    assert patches.dtype == np.float32 and patches.shape == (2, 32, 32, 4)
    assert np.isnan(patches[0, 0, 0, 2]) and patches[0, 0, 0, 1] == 7
    assert np.isnan(patches[:, 20:]).all() and not np.isnan(patches[1, :20]).any()
    # 12 padded rows of 32, plus the one nodata pixel in the first patch
    np.testing.assert_allclose(patch_nan_fraction(patches), [(12 * 32 + 1) / 1024, 12 / 32])
    assert patch_nan_fraction(patches[1]) == pytest.approx(12 / 32)
