"""Blended tiled inference: any H x W through a fixed-size generator, no seams, bounded memory.

The generator takes ``tile x tile`` patches. A scene is cut into tiles ``tile - overlap`` apart
(the last row and column shifted back inside, as :func:`s2ac.data.tiling.patch_origins` does),
each prediction is weighted by a window that falls smoothly to ~0 over the overlap, and every
pixel is the weighted mean of the tiles covering it. A per-tile quantity (the physics generator's
atmosphere estimate, a U-Net's border effects) therefore fades from one tile to the next instead
of jumping at a seam.

Memory is bounded by one strip of tile rows: :func:`blend_rows` reads ``tile`` rows at a time,
accumulates them into a ``tile x width`` buffer and hands back each finished row range as soon
as no later tile touches it. A full 10980 x 10980 tile thus needs ~0.1 GB of buffers here, not
the 2 GB of the scene. The same function serves ``s2ac correct`` (rows from and to GeoTIFFs) and
the pyfunc (rows from and to arrays, :func:`blend_array`).

Nodata (NaN in any band) is filled per tile with the band medians before the model sees it and
is NaN again in the output; a tile of nodata only is not predicted at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from s2ac.data.tiling import _axis_origins

#: ``(B, tile, tile, C)`` float32 without NaN -> ``(B, tile, tile, C_out)``.
Predict = Callable[[np.ndarray], np.ndarray]
#: ``(first_row, stop_row)`` -> the scene's rows, ``(stop - first, W, C)``, NaN for nodata.
ReadRows = Callable[[int, int], np.ndarray]
#: ``(first_row, rows (h, W, C_out))``: a finished range of output rows, in order.
WriteRows = Callable[[int, np.ndarray], None]


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """``(tile, tile)`` weights: 1 inside, a sin² ramp to ~0 over ``overlap`` px at each edge.

    Never exactly 0, so a pixel only one tile covers (the scene's border) keeps its value.
    """
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap {overlap} must be in 0..tile/2 ({tile // 2}) px")
    ramp = np.ones(tile, dtype=np.float64)
    if overlap:
        rising = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        ramp[:overlap], ramp[tile - overlap :] = rising, rising[::-1]
    return np.outer(ramp, ramp).astype(np.float32)


def tile_origins(height: int, width: int, tile: int, overlap: int) -> tuple[list[int], list[int]]:
    """Row and column origins of the tiles covering ``height x width`` (shifted, never padded,
    unless the scene is smaller than a tile)."""
    stride = tile - overlap
    return _axis_origins(height, tile, stride), _axis_origins(width, tile, stride)


def _fill_nodata(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tiles with NaN pixels filled by each tile's band medians, and the mask of those pixels."""
    if np.isfinite(tiles).all():  # the common case, one pass
        return tiles, np.zeros(tiles.shape[:-1], dtype=bool)
    invalid = ~np.isfinite(tiles).all(axis=-1)
    filled = tiles.copy()
    for k in np.flatnonzero(invalid.any(axis=(1, 2))):
        valid = ~invalid[k]
        medians = np.median(tiles[k][valid], axis=0) if valid.any() else 0.0
        filled[k][invalid[k]] = medians
    return filled, invalid


def _predict_tiles(predict: Predict, tiles: np.ndarray, batch_size: int) -> np.ndarray:
    """Predictions for ``tiles``, NaN where the input was nodata; nodata-only tiles skipped."""
    filled, invalid = _fill_nodata(tiles)
    useful = ~invalid.all(axis=(1, 2))
    out: np.ndarray | None = None
    indexes = np.flatnonzero(useful)
    # Balanced chunks (57 tiles in 32s: 29 + 28, not 32 + 25): the predictor pads a chunk up to
    # a size it has compiled, so unequal chunks would waste work on padding.
    chunks = np.array_split(indexes, -(-len(indexes) // batch_size)) if len(indexes) else []
    for chunk in chunks:
        pred = np.asarray(predict(filled[chunk]), dtype=np.float32)
        if out is None:
            out = np.full((len(tiles), *pred.shape[1:]), np.nan, dtype=np.float32)
        out[chunk] = pred
    if out is None:  # nothing but nodata: the output has the input's channels
        return np.full(tiles.shape, np.nan, dtype=np.float32)
    out[invalid] = np.nan
    return out


def blend_rows(
    read: ReadRows,
    write: WriteRows,
    height: int,
    width: int,
    predict: Predict,
    *,
    tile: int,
    overlap: int,
    batch_size: int = 8,
    progress: Callable[[Iterator[int]], Iterator[int]] | None = None,
) -> None:
    """Predict a ``height x width`` scene tile by tile, blending overlaps; see the module doc.

    ``read`` is called once per row of tiles, ``write`` with every output row exactly once, top
    to bottom. ``progress`` wraps the iteration over rows of tiles (a progress bar).
    """
    if height < 1 or width < 1:
        raise ValueError(f"scene of {height}x{width} pixels has nothing to correct")
    window = blend_window(tile, overlap)
    window3 = window[..., None]
    rows, cols = tile_origins(height, width, tile, overlap)
    span = max(width, tile)  # a scene narrower than a tile is padded to one
    acc: np.ndarray | None = None
    weight = np.zeros((tile, span), dtype=np.float32)
    top = 0  # scene row of acc[0]

    def flush(stop: int) -> None:
        nonlocal acc, weight, top
        done = min(stop, height) - top
        if done <= 0 or acc is None:
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            finished = acc[:done, :width] / weight[:done, :width, None]
        finished[weight[:done, :width] == 0] = np.nan
        write(top, finished)
        acc = np.concatenate([acc[done:], np.zeros_like(acc[:done])])
        weight = np.concatenate([weight[done:], np.zeros_like(weight[:done])])
        top += done

    steps: Any = range(len(rows)) if progress is None else progress(iter(range(len(rows))))
    for i in steps:
        row = rows[i]
        flush(row)
        strip = np.asarray(read(row, min(row + tile, height)), dtype=np.float32)
        if strip.shape[:2] != (min(tile, height - row), width):
            raise ValueError(f"read({row}, ...) returned {strip.shape}, not rows of width {width}")
        if strip.shape[0] < tile or width < tile:  # a scene smaller than one tile
            pad = ((0, tile - strip.shape[0]), (0, span - width), (0, 0))
            strip = np.pad(strip, pad, constant_values=np.nan)
        tiles = np.stack([strip[:, c : c + tile] for c in cols])
        preds = _predict_tiles(predict, tiles, batch_size)
        if acc is None:
            acc = np.zeros((tile, span, preds.shape[-1]), dtype=np.float32)
        complete = bool(np.isfinite(preds).all())  # no nodata: no masks (3x faster)
        for c, pred in zip(cols, preds, strict=True):
            if complete:
                acc[:, c : c + tile] += pred * window3
                weight[:, c : c + tile] += window
                continue
            valid = np.isfinite(pred).all(axis=-1)
            w = np.where(valid, window, 0.0)
            acc[:, c : c + tile] += np.where(valid[..., None], pred, 0.0) * w[..., None]
            weight[:, c : c + tile] += w
    flush(height)


def blend_array(
    image: np.ndarray, predict: Predict, *, tile: int, overlap: int, batch_size: int = 8
) -> np.ndarray:
    """:func:`blend_rows` over an in-memory ``(H, W, C)`` image; returns ``(H, W, C_out)``."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected an image (H, W, C), got shape {image.shape}")
    height, width, _ = image.shape
    parts: list[np.ndarray] = []
    blend_rows(
        lambda start, stop: image[start:stop],
        lambda start, rows: parts.append(rows),
        height,
        width,
        predict,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
    )
    return np.concatenate(parts)
