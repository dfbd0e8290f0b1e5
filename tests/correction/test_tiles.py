"""Blended tiled inference: exact for per-pixel models, seamless for per-tile ones, row-bounded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from s2ac.correction.tiles import blend_array, blend_rows, blend_window, tile_origins


def smooth_scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(height, width, 4))
    return (0.1 + 0.05 * ndimage.gaussian_filter(noise, (6, 6, 0))).astype(np.float32)


def per_pixel(batch: np.ndarray) -> np.ndarray:
    return 0.9 * batch - 0.01


@pytest.mark.parametrize(("height", "width"), [(300, 517), (64, 64), (40, 90), (100, 33)])
def test_a_per_pixel_model_is_reproduced_exactly_at_any_size(height, width):
    scene = smooth_scene(height, width)
    out = blend_array(scene, per_pixel, tile=64, overlap=16, batch_size=3)
    assert out.shape == scene.shape
    np.testing.assert_allclose(out, per_pixel(scene), atol=1e-6)


def test_window_is_one_inside_and_falls_towards_zero_over_the_overlap():
    w = blend_window(64, 16)
    assert w[32, 32] == 1.0 and w[16:48, 16:48].min() == 1.0
    assert 0 < w[0, 32] < 0.01 and 0 < w[0, 0] < 1e-4
    np.testing.assert_allclose(w, w.T)
    assert np.all(np.diff(w[32, :17]) > 0)  # a monotone ramp
    with pytest.raises(ValueError, match="overlap"):
        blend_window(64, 40)


def per_tile_bias(batch: np.ndarray) -> np.ndarray:
    """Like the physics generator's pooled atmosphere: one estimate per tile from its content."""
    return batch - 2.0 * batch.mean(axis=(1, 2), keepdims=True)


def largest_step(image: np.ndarray) -> float:
    return float(np.abs(np.diff(image, axis=1)).max())


def test_overlap_removes_the_seams_of_a_per_tile_estimate():
    scene = smooth_scene(256, 512, seed=3)
    scene += np.linspace(0.0, 0.1, 512, dtype=np.float32)[None, :, None]  # a haze gradient
    truth_step = largest_step(scene)
    seams = blend_array(scene, per_tile_bias, tile=128, overlap=0)
    blended = blend_array(scene, per_tile_bias, tile=128, overlap=32)
    # Without overlap the per-tile offsets jump at the tile borders ...
    assert largest_step(seams) > 10 * truth_step
    # ... with it they fade: steps within 2x the scene's own, 20x below the seams.
    assert largest_step(blended) < 2 * truth_step
    assert largest_step(seams) > 20 * largest_step(blended)


def test_blended_borders_match_a_single_pass_of_a_model_with_context():
    """A 5x5 filter sees across tile borders; within 32 px of overlap tiles agree with one pass."""
    scene = smooth_scene(300, 400, seed=5)

    def blur(batch: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(batch, size=(1, 5, 5, 1), mode="nearest")

    single = blur(scene[None])[0]
    tiled = blend_array(scene, blur, tile=128, overlap=32)
    # Stated tolerance: 1e-3 reflectance everywhere (it differs only near tile borders).
    assert np.abs(tiled - single).max() < 1e-3
    rows, cols = tile_origins(300, 400, 128, 32)
    inner = tiled[140:150, 140:150] - single[140:150, 140:150]
    assert np.abs(inner).max() < 1e-6 and len(rows) * len(cols) == 12


def test_nodata_stays_nodata_and_nodata_only_tiles_are_not_predicted():
    scene = smooth_scene(200, 200, seed=7)
    scene[:70, :70] = np.nan  # a whole tile of nodata (tile 64, stride 48: tile (0, 0))
    scene[150, 150, 2] = np.nan  # one band missing: the pixel is unusable as a whole
    calls: list[int] = []

    def counting(batch: np.ndarray) -> np.ndarray:
        assert np.isfinite(batch).all()  # the model never sees NaN
        calls.append(len(batch))
        return per_pixel(batch)

    out = blend_array(scene, counting, tile=64, overlap=8, batch_size=100)
    invalid = np.isnan(scene).any(axis=-1)
    assert np.isnan(out[invalid]).all() and np.isfinite(out[~invalid]).all()
    np.testing.assert_allclose(out[~invalid], per_pixel(scene)[~invalid], atol=1e-6)
    assert sum(calls) == 16 - 1  # 4 x 4 tiles, the nodata-only one skipped


def test_rows_are_read_a_strip_at_a_time_and_written_once_in_order():
    scene = smooth_scene(500, 300, seed=9)
    reads: list[tuple[int, int]] = []
    written: list[tuple[int, int]] = []

    def read(start: int, stop: int) -> np.ndarray:
        reads.append((start, stop))
        return scene[start:stop]

    def write(start: int, rows: np.ndarray) -> None:
        written.append((start, start + len(rows)))

    blend_rows(read, write, 500, 300, per_pixel, tile=64, overlap=16)
    assert all(stop - start <= 64 for start, stop in reads)
    assert len(reads) == len(tile_origins(500, 300, 64, 16)[0])
    assert written[0][0] == 0 and written[-1][1] == 500
    assert all(a[1] == b[0] for a, b in itertools.pairwise(written))
    assert max(stop - start for start, stop in written) <= 64
