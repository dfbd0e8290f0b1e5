"""Read and write the GeoTIFFs s2ac consumes and produces, rejecting unusable input early.

Every raster leaves :func:`read_raster` as float32 reflectance, channels last, in the requested
band order, with nodata and inf as NaN. Problems a user can fix (wrong bands, DN instead of
reflectance, no CRS, too many gaps, a broken file) raise :class:`~s2ac.errors.InputDataError`
naming the file, so a bad scene fails at load time and not as a silent garbage prediction.
:func:`write_raster` writes Cloud-Optimized GeoTIFFs atomically: readers never see half a file.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from s2ac.bands import BAND_NAMES, REFLECTANCE_SCALE, dn_to_reflectance
from s2ac.errors import InputDataError

#: Reflectance rarely exceeds ~1.5 (bright cloud, snow); DN are hundreds to thousands. A 99th
#: percentile above this therefore means the file holds DN.
DN_PERCENTILE_LIMIT = 3.0
_DN_FIX = (
    f"read it with convert_dn=True (`s2ac data info --convert-dn`) to scale by "
    f"{REFLECTANCE_SCALE:.0e}"
)
#: Lowest reflectance accepted: Level-2A's -1000 DN offset (baseline 04.00) reaches -0.1;
#: anything lower is not reflectance (e.g. DN with a wrong offset: down to -0.98 was accepted).
MIN_REFLECTANCE = -0.1


@dataclass(frozen=True, eq=False)
class Raster:
    """Pixels plus the georeferencing needed to write results back in the same place.

    ``nodata`` is the value the file used; those pixels are NaN in ``data``.
    """

    data: np.ndarray
    crs: CRS | None
    transform: Affine
    nodata: float | None
    descriptions: tuple[str, ...]
    path: str


def _canonical(name: str) -> str:
    """``b02`` / ``B02`` / ``B2`` -> ``B2``, so ESA and s2ac spellings match."""
    normalized = name.strip().upper()
    match = re.fullmatch(r"B0*(\d+A?)", normalized)
    return f"B{match.group(1)}" if match else normalized


def _open(path: str | os.PathLike[str]) -> Any:
    """Open a dataset, turning GDAL's terse failures into errors that say what is wrong."""
    local = "://" not in str(path) and not str(path).startswith("/vsi")
    if local and not os.path.exists(path):
        raise InputDataError(path, "file does not exist", "check the path")
    if local and os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InputDataError(path, "empty file (0 bytes)", "re-download or re-export it")
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise InputDataError(
            path, f"corrupt or truncated raster, GDAL cannot open it: {exc}", "re-download it"
        ) from exc


def _band_indexes(src: Any, path: object, bands: Sequence[str]) -> list[int]:
    """1-based band indexes of ``bands``: by description if the file has any, else by order."""
    described = [_canonical(d) if d else "" for d in src.descriptions]
    if any(described):
        missing = [b for b in bands if _canonical(b) not in described]
        if missing:
            raise InputDataError(
                path,
                f"band {', '.join(missing)} not found in band descriptions "
                f"({', '.join(d or '?' for d in src.descriptions)})",
                "export the bands with their names as descriptions",
            )
        return [described.index(_canonical(b)) + 1 for b in bands]
    if src.count != len(bands):
        raise InputDataError(
            path,
            f"expected {len(bands)} bands {', '.join(bands)}, found {src.count}",
            "the file has no band descriptions, so bands are taken in order",
        )
    return list(range(1, src.count + 1))


def read_raster(
    path: str | os.PathLike[str],
    *,
    bands: Sequence[str] | None = BAND_NAMES,
    units: Literal["reflectance", "dn"] = "reflectance",
    convert_dn: bool = False,
    processing_baseline: str | None = None,
    harmonized: bool = True,
    on_missing_crs: Literal["error", "warn", "ignore"] = "error",
    max_nonfinite_fraction: float = 0.01,
    window: Window | None = None,
) -> Raster:
    """Read ``bands`` of a raster as float32 reflectance (H, W, C), validating it on the way.

    Args:
        path: GeoTIFF (or anything GDAL reads).
        bands: Bands to return, in this order; ``None`` returns all bands as stored.
        units: What the file holds; ``"dn"`` files are always converted to reflectance.
        convert_dn: Convert DN to reflectance even though ``units="reflectance"``.
        processing_baseline: Product baseline (e.g. ``"04.00"``), for the 1000 DN offset.
        harmonized: DNs already had the offset removed (Earth Engine ``*_HARMONIZED``).
        on_missing_crs: A raster without CRS cannot be written back georeferenced, hence
            ``"error"`` by default.
        max_nonfinite_fraction: Largest tolerated share of pixels with a NaN/inf/nodata band.
        window: Read only this window (checks then apply to the window).

    Raises:
        InputDataError: The file is missing, empty, corrupt, has the wrong bands, no CRS,
            DN where reflectance was expected, or too many non-finite pixels.
    """
    if units not in ("reflectance", "dn") or on_missing_crs not in ("error", "warn", "ignore"):
        raise ValueError(f"invalid units={units!r} or on_missing_crs={on_missing_crs!r}")
    with _open(path) as src:
        if src.crs is None:
            problem = "has no CRS (coordinate reference system)"
            if on_missing_crs == "error":
                raise InputDataError(
                    path, problem, "georeference it, or pass on_missing_crs='warn'"
                )
            if on_missing_crs == "warn":
                warnings.warn(f"{path}: {problem}", UserWarning, stacklevel=2)
        if bands is None:
            indexes = list(range(1, src.count + 1))
            descriptions = tuple(d or "" for d in src.descriptions)
        else:
            indexes = _band_indexes(src, path, bands)
            descriptions = tuple(_canonical(b) for b in bands)
        if window is not None and not (
            0 <= window.col_off <= src.width - window.width
            and 0 <= window.row_off <= src.height - window.height
        ):
            raise ValueError(f"window {window} is not inside the {src.width}x{src.height} raster")
        try:
            raw = src.read(indexes, window=window)
        except RasterioError as exc:
            raise InputDataError(
                path, f"corrupt or truncated raster, GDAL cannot read it: {exc}", "re-download it"
            ) from exc
        nodatavals = [src.nodatavals[i - 1] for i in indexes]
        crs, nodata = src.crs, src.nodata
        transform = src.transform
        if window is not None:  # same as src.window_transform, minus affine's `*` deprecation
            transform = transform @ Affine.translation(window.col_off, window.row_off)

    # float32 holds every uint16 DN exactly; float64 would double RAM. No copy of float32 data:
    # nodata masks below are taken before the values they mask are overwritten.
    data = raw.astype(np.float32, copy=False)
    for band, stored, value in zip(data, raw, nodatavals, strict=True):
        if value is not None:  # compare in the file's dtype, where nodata is exact
            band[np.isnan(stored) if np.isnan(value) else stored == value] = np.nan
    converted = units == "dn" or convert_dn
    if converted:
        data[data == 0] = np.nan  # DN 0 is the NO_DATA value of Sentinel-2 L1C and L2A products
        data = dn_to_reflectance(
            data, processing_baseline=processing_baseline, harmonized=harmonized
        )
    finite = np.isfinite(data)  # one pass, used thrice
    if not finite.all():
        data[~finite] = np.nan  # one mask (NaN) for downstream code, not three
    if not converted:
        sample = data.reshape(-1)[:: max(1, data.size // 1_000_000)]  # ~1e6 values is enough
        sample = sample[np.isfinite(sample)]
        p99 = float(np.percentile(sample, 99)) if sample.size else 0.0
        if p99 > DN_PERCENTILE_LIMIT:
            raise InputDataError(
                path,
                f"data looks like digital numbers (DN), not reflectance "
                f"(99th percentile {p99:.0f} > {DN_PERCENTILE_LIMIT:g})",
                _DN_FIX,
            )
    lowest = float(np.nanmin(data)) if finite.any() else 0.0
    if lowest < MIN_REFLECTANCE - 1e-6:  # float32 of -0.1 is a hair below it
        raise InputDataError(
            path, f"reflectance down to {lowest:.3f}, below the {MIN_REFLECTANCE} floor of "
            "Level-1C/2A products: not reflectance, or a wrong DN offset",
            "check the units and processing baseline: DN offset +1000 since 04.00",
        )  # fmt: skip
    share = float((~finite).any(axis=0).mean()) if data.size else 0.0
    if share > max_nonfinite_fraction:
        raise InputDataError(
            path,
            f"NaN/inf share {share:.1%} above the {max_nonfinite_fraction:.1%} limit",
            "fill or mask the gaps, choose another scene or raise max_nonfinite_fraction",
        )
    pixels = np.ascontiguousarray(np.moveaxis(data, 0, -1))
    return Raster(pixels, crs, transform, nodata, descriptions, str(path))


def iter_windows(
    path: str | os.PathLike[str], size: int, stride: int | None = None
) -> Iterator[Window]:
    """Windows of ``size`` x ``size`` covering the raster row by row, ``stride`` apart.

    The last window of a row/column is *shifted* back inside the raster (overlapping its
    neighbour) rather than clipped, so every window has the fixed size the model expects; only a
    raster smaller than ``size`` yields a single, clipped, window.
    """
    stride = size if stride is None else stride
    if not 0 < stride <= size:
        raise ValueError(f"need 0 < stride <= size to cover the raster, got {stride=}, {size=}")
    with _open(path) as src:
        width, height = src.width, src.height

    def offsets(extent: int) -> list[int]:
        starts = list(range(0, max(extent - size, 0) + 1, stride))
        if starts[-1] + size < extent:
            starts.append(extent - size)
        return starts

    return iter(
        [
            Window(col, row, min(size, width), min(size, height))
            for row in offsets(height)
            for col in offsets(width)
        ]
    )


def raster_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Shape, CRS, dtype, band descriptions and nodata of a raster, without reading pixels."""
    with _open(path) as src:
        return {
            "width": src.width,
            "height": src.height,
            "count": src.count,
            "crs": src.crs.to_string() if src.crs else None,
            "dtype": src.dtypes[0],
            "descriptions": tuple(d or "" for d in src.descriptions),
            "nodata": src.nodata,
        }


def write_raster(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    crs: CRS | str | None,
    transform: Affine,
    nodata: float | None = None,
    descriptions: Sequence[str] = BAND_NAMES,
    cog: bool = True,
    dtype: str = "float32",
) -> Path:
    """Write (H, W, C) ``data`` as a (Cloud-Optimized) GeoTIFF, atomically.

    The file is written under a hidden temporary name in the same directory and renamed into
    place, so a crash or error never leaves a partial file under ``path`` (and an existing file
    stays untouched). NaN pixels are stored as ``nodata`` when one is given. COGs (DEFLATE,
    floating-point predictor, 512 px tiles, overviews) let viewers stream parts of big scenes.

    Raises:
        ValueError: ``data`` is not 3-D, ``descriptions`` does not match its channel count, or
            NaN would have to be stored in an integer ``dtype`` without ``nodata``.
    """
    data = np.asarray(data)
    if data.ndim != 3 or data.shape[2] != len(descriptions):
        raise ValueError(
            f"data shape {data.shape} does not match {len(descriptions)} descriptions "
            f"{tuple(descriptions)}; expected (H, W, C) with one description per channel"
        )
    bands = np.moveaxis(data, -1, 0).astype(np.float64)
    if nodata is not None:
        bands[np.isnan(bands)] = nodata
    elif not np.issubdtype(np.dtype(dtype), np.floating) and np.isnan(bands).any():
        raise ValueError(f"data has NaN but {dtype} cannot store NaN; pass nodata")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    layout: dict[str, Any] = (
        {"driver": "COG", "blocksize": 512, "predictor": "YES", "overviews": "AUTO"}
        if cog
        else {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256}
    )
    if not cog:
        layout["predictor"] = 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2
    profile = {
        **layout,
        "width": data.shape[1],
        "height": data.shape[0],
        "count": data.shape[2],
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
        "bigtiff": "IF_SAFER",
    }
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(bands.astype(dtype))
            dst.descriptions = tuple(descriptions)
        os.replace(tmp, path)
    except BaseException:
        for leftover in path.parent.glob(f"{tmp.name}*"):  # GDAL may add .aux.xml sidecars
            leftover.unlink(missing_ok=True)
        raise
    return path
