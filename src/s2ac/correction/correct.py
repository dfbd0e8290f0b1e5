"""``s2ac correct``: a whole scene in, a Cloud-Optimized GeoTIFF of surface reflectance out.

The scene is read a strip of tiles at a time (:mod:`s2ac.correction.tiles`), corrected with
blended overlaps, and written strip by strip into a hidden tiled GeoTIFF, which GDAL then copies
into a COG. Only then are the JSON item (footprint, datetime, model version) and the COG written
beside each other (an atomic write and a rename, or uploads for ``gs://``): readers never see half
a scene. The item marks the name as s2ac's, so a rerun (or a retry after a crash between the two
writes) may replace the COG, while a file someone else wrote needs ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2ac import __version__
from s2ac.bands import BAND_NAMES
from s2ac.config import PredictConfig
from s2ac.console import log, track
from s2ac.correction.model import DEFAULT_MODEL, LoadedGenerator, load_generator_model
from s2ac.correction.scene import Scene, Units, open_scene
from s2ac.correction.tiles import blend_rows, tile_origins
from s2ac.errors import InputDataError
from s2ac.io import storage

#: Geometry values the metadata may lack and a climatology may stand in for (the rest are needed).
GEOMETRY_DEFAULTS = ("elevation_km", "ozone")
#: Bounded GDAL block cache: the COG copy streams, it need not hold the scene.
GDAL_CACHE_MB = 64
#: Threads: compression is most of the COG copy's time, and the model is done by then.
COG_OPTIONS = {"predictor": "YES", "blocksize": 512, "overviews": "AUTO", "bigtiff": "IF_SAFER",
               "num_threads": "ALL_CPUS"}  # fmt: skip
#: Fastest level of each codec: ~ the same size on float32 reflectance, 1.4-2x the speed.
COMPRESSION_LEVEL = {"zstd": 1, "deflate": 1}


@dataclass(frozen=True)
class Correction:
    """What ``correct`` wrote and with which model."""

    output: str
    item: str
    model_uri: str
    model_version: str | None
    run_id: str | None
    height: int
    width: int
    tiles: int
    seconds: float

    @property
    def megapixels_per_second(self) -> float:
        return self.height * self.width / 1e6 / max(self.seconds, 1e-9)


def item_path(output: str) -> str:
    """The JSON item beside an output COG."""
    return f"{output.rsplit('.', 1)[0]}.json"


def _check_output(output: str, overwrite: bool) -> None:
    if not output.lower().endswith((".tif", ".tiff")):
        raise InputDataError(output, "output must be a .tif (a Cloud-Optimized GeoTIFF)",
                             "name it e.g. scene_sr.tif")  # fmt: skip
    if overwrite or not storage.exists(output):
        return
    try:
        ours = json.loads(storage.read_bytes(item_path(output))).get("properties", {})
        ours = "s2ac:model_uri" in ours
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise InputDataError(output, "exists and was not written by s2ac correct: refusing to "
                             "replace it", "choose another output or pass --overwrite")  # fmt: skip


def scene_geometry(
    scene: Scene, overrides: dict[str, float | None], needed: bool
) -> tuple[float, ...] | None:
    """The :data:`~s2ac.physics.tf_lut.GEOMETRY` vector: options over metadata over climatology."""
    if not needed:
        return None
    from s2ac.physics.corrections import CLIMATOLOGY
    from s2ac.physics.tf_lut import GEOMETRY

    values: dict[str, float] = {k: getattr(CLIMATOLOGY, k) for k in GEOMETRY_DEFAULTS}
    values.update(scene.geometry)
    values.update({k: float(v) for k, v in overrides.items() if v is not None})
    missing = [name for name in GEOMETRY if name not in values]
    if missing:
        options = ", ".join(
            "--sun-zenith" if name == "solar_zenith" else f"--{name.replace('_', '-')}"
            for name in missing
        )
        raise InputDataError(
            scene.path, f"the model needs the acquisition geometry and the metadata has no "
            f"{', '.join(missing)}", f"pass {options}",
        )  # fmt: skip
    return tuple(float(values[name]) for name in GEOMETRY)


def _footprint(scene: Scene) -> list[list[float]]:
    """The scene's (lon, lat) ring: from the product metadata, else its bounds."""
    if scene.properties.get("footprint"):
        return [list(map(float, point)) for point in scene.properties["footprint"]]
    from rasterio.warp import transform

    t = scene.transform
    xs = [t.c, t.c + t.a * scene.width, t.c + t.a * scene.width, t.c, t.c]
    ys = [t.f, t.f, t.f + t.e * scene.height, t.f + t.e * scene.height, t.f]
    lons, lats = transform(scene.crs, "EPSG:4326", xs, ys)
    return [[float(x), float(y)] for x, y in zip(lons, lats, strict=True)]


def _item(scene: Scene, output: str, model: LoadedGenerator, input_uri: str) -> dict[str, Any]:
    """A STAC-style item: footprint, datetime and the model that corrected the scene."""
    ring = _footprint(scene)
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": Path(output).stem,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": scene.properties.get("datetime"),
            "platform": scene.properties.get("platform"),
            "processing_baseline": scene.properties.get("processing_baseline"),
            "proj:wkt2": scene.crs.to_wkt(),
            "s2ac:input": input_uri,
            "s2ac:model_uri": model.uri,
            "s2ac:model_version": model.version,
            "s2ac:run_id": model.run_id,
            "s2ac:version": __version__,
        },
        "assets": {"data": {"href": Path(output).name, "roles": ["data"],
                            "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
    }  # fmt: skip


def _tags(model: LoadedGenerator, input_uri: str) -> dict[str, str]:
    return {
        "S2AC_MODEL_URI": model.uri,
        "S2AC_MODEL_VERSION": model.version or "",
        "S2AC_MODEL_RUN_ID": model.run_id or "",
        "S2AC_INPUT": input_uri,
        "S2AC_VERSION": __version__,
        "UNITS": "surface reflectance (L2A), scale 1, offset 0",
    }


def _write_cog(
    scene: Scene, model: LoadedGenerator, folder: str, input_uri: str, config: PredictConfig,
    geometry: tuple[float, ...] | None,
) -> tuple[str, int]:  # fmt: skip
    """Correct ``scene`` into a COG inside ``folder``; returns its path and the tile count."""
    import rasterio
    import rasterio.shutil

    tile, overlap = model.tile, config.overlap
    rows, cols = tile_origins(scene.height, scene.width, tile, overlap)
    strips = os.path.join(folder, "strips.tif")  # uncompressed: compressed once, into the COG
    profile = {"driver": "GTiff", "width": scene.width, "height": scene.height, "count": 4,
               "dtype": "float32", "crs": scene.crs, "transform": scene.transform,
               "nodata": float("nan"), "tiled": True, "blockxsize": 256, "blockysize": 256,
               "bigtiff": "IF_SAFER"}  # fmt: skip
    with rasterio.open(strips, "w", **profile) as dst:

        def write(start: int, block: np.ndarray) -> None:
            window = rasterio.windows.Window(0, start, scene.width, len(block))
            dst.write(np.moveaxis(block, -1, 0).astype(np.float32), window=window)

        blend_rows(scene.read_rows, write, scene.height, scene.width,
                   model.predictor(geometry, config.batch_size), tile=tile, overlap=overlap,
                   batch_size=config.batch_size,
                   progress=lambda steps: track(steps, f"Correcting {Path(scene.path).name}",
                                                total=len(rows)))  # fmt: skip
        dst.descriptions = tuple(BAND_NAMES)
        dst.scales, dst.offsets = (1.0,) * 4, (0.0,) * 4
        dst.update_tags(**_tags(model, input_uri))
    cog = os.path.join(folder, "scene.tif")
    codec = config.compression
    level = {"level": COMPRESSION_LEVEL[codec]} if codec in COMPRESSION_LEVEL else {}
    rasterio.shutil.copy(strips, cog, driver="COG", compress=codec.upper(), **level,
                         **COG_OPTIONS)  # fmt: skip
    os.remove(strips)
    return cog, len(rows) * len(cols)


def correct(
    input_uri: str,
    output: str,
    *,
    model: str = DEFAULT_MODEL,
    config: PredictConfig | None = None,
    units: Units = "auto",
    processing_baseline: str | None = None,
    geometry: dict[str, float | None] | None = None,
    overwrite: bool = False,
) -> Correction:
    """Correct ``input_uri`` (GeoTIFF/COG or L1C SAFE, local or ``gs://``) into ``output``."""
    import rasterio

    config = config or PredictConfig()
    input_uri, output = str(input_uri), str(output)
    if storage.is_gcs(input_uri) and input_uri.rstrip("/").upper().endswith(".SAFE"):
        raise InputDataError(input_uri, "a .SAFE folder on gs:// cannot be read in place",
                             "pass its .zip, or copy the folder here first")  # fmt: skip
    _check_output(output, overwrite)
    start = time.monotonic()
    with storage.localize(input_uri) as local:  # gs:// is downloaded
        scene = open_scene(local, units=units, processing_baseline=processing_baseline)
        scene.path = input_uri  # errors and tags name what the user passed
        generator = load_generator_model(model)
        if config.overlap > generator.tile // 2:
            raise InputDataError(output, f"overlap {config.overlap} px is over half the "
                                 f"{generator.tile} px tile", "lower predict.overlap")  # fmt: skip
        vector = scene_geometry(scene, geometry or {}, generator.needs_geometry)
        log.info("correcting %s (%dx%d, %s) with %s", input_uri, scene.width, scene.height,
                 scene.units, generator.uri)  # fmt: skip
        parent = None if storage.is_gcs(output) else str(Path(output).resolve().parent)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".s2ac-correct-", dir=parent) as folder, \
                rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):  # fmt: skip
            cog, tiles = _write_cog(scene, generator, folder, input_uri, config, vector)
            item = json.dumps(_item(scene, output, generator, input_uri), indent=2)
            # The item first: it claims the name for s2ac, so a retry after a crash between the
            # two writes may replace the COG (an item without its COG is an unfinished run).
            storage.write_bytes(item_path(output), item.encode())
            if parent:
                os.replace(cog, output)
            else:
                storage.upload(cog, output)
    seconds = time.monotonic() - start
    result = Correction(output, item_path(output), generator.uri, generator.version,
                        generator.run_id, scene.height, scene.width, tiles, seconds)  # fmt: skip
    log.info("wrote %s (%.2f Mpx/s)", output, result.megapixels_per_second)
    return result
