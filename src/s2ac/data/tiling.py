"""Tiling: cut a ``(H, W, C)`` scene into full-size square patches that cover every pixel.

A module of its own because it is pure NumPy array geometry: it knows nothing about how
patches are stored (:mod:`s2ac.data.tfrecord`) or fed to the model (:mod:`s2ac.data.input`),
and importing it does not pull in TensorFlow.

:func:`patch_origins` / :func:`extract_patches` shift the last row and column of patches back
inside the image (so they overlap their neighbour) rather than pad them: the model never sees
artificial borders. Only an image smaller than one patch is padded, with NaN (= nodata).
"""

from __future__ import annotations

import numpy as np

Origin = tuple[int, int]


def _axis_origins(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]  # padded up to one patch
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)  # shifted back inside: full-size, overlapping its neighbour
    return starts


def patch_origins(height: int, width: int, size: int, stride: int) -> list[Origin]:
    """Top-left ``(row, col)`` of the patches covering a ``height x width`` image, row-major.

    Every pixel is covered; every patch lies inside the image (except when the image is smaller
    than ``size``, which :func:`extract_patches` pads). ``stride < size`` gives overlap.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image of {height}x{width} pixels has nothing to tile")
    if not 0 < stride <= size:
        raise ValueError(f"stride {stride} must be in 1..size ({size}), or pixels are skipped")
    rows, cols = _axis_origins(height, size, stride), _axis_origins(width, size, stride)
    return [(row, col) for row in rows for col in cols]


def extract_patches(
    image: np.ndarray,
    size: int,
    stride: int,
    *,
    pad_value: float = np.nan,
    nodata: float | None = None,
) -> tuple[np.ndarray, list[Origin]]:
    """Cut ``image`` (H, W, C) into ``(N, size, size, C)`` patches at :func:`patch_origins`.

    Pixels equal to ``nodata`` become NaN, so downstream code has one nodata convention. Images
    smaller than ``size`` are padded at the bottom/right with ``pad_value`` (NaN: nodata).
    Integer images come back as float32, because NaN needs a float type.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W, C), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    if nodata is not None:
        image = np.where(image == nodata, np.nan, image)  # a copy: the caller's array is kept
    height, width, _ = image.shape
    origins = patch_origins(height, width, size, stride)
    pad_rows, pad_cols = max(size - height, 0), max(size - width, 0)
    if pad_rows or pad_cols:
        image = np.pad(image, ((0, pad_rows), (0, pad_cols), (0, 0)), constant_values=pad_value)
    patches = np.stack([image[r : r + size, c : c + size] for r, c in origins])
    return patches, origins


def patch_nan_fraction(patches: np.ndarray) -> np.ndarray | float:
    """Share of pixels with a NaN (or inf) in any band: per patch for ``(N, s, s, C)``, else one
    float for a single ``(s, s, C)`` patch. A pixel missing one band is unusable as a whole."""
    patches = np.asarray(patches)
    if patches.ndim not in (3, 4):
        raise ValueError(f"expected (size, size, C) or (N, size, size, C), got {patches.shape}")
    bad_pixels = ~np.isfinite(patches).all(axis=-1)
    fraction = bad_pixels.mean(axis=(-2, -1))
    return float(fraction) if patches.ndim == 3 else fraction
