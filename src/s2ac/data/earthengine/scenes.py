"""Which scenes to export: regions and dates, the L1C/L2A/Cloud Score+ pairing, scene listing
per stratum, and stratified sampling.

A module of its own because it is the query side of Earth Engine: it builds the expressions and
picks the scenes, while :mod:`s2ac.data.earthengine.client` carries the requests and
:mod:`s2ac.data.earthengine.export` turns the chosen scenes into files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import ee
import numpy as np

from s2ac.bands import BAND_NAMES, EE_L1C_COLLECTION, EE_L2A_COLLECTION, REFLECTANCE_SCALE
from s2ac.config import EarthEngineConfig
from s2ac.console import track
from s2ac.data.earthengine.client import EarthEngine
from s2ac.data.tfrecord import SR_KEYS, TOA_KEYS
from s2ac.errors import ConfigError, EarthEngineError, InputDataError
from s2ac.io import storage

log = logging.getLogger(__name__)

CLOUD_SCORE_PLUS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
CLOUD_SCORE_BAND = "cs_cdf"
CLOUD_PROPERTY = "CLOUDY_PIXEL_PERCENTAGE"
STRATUM = "s2ac_stratum"  # property naming the stratum (state) of a region feature or scene
_L2A_MATCH, _CS_MATCH, _REGION_MATCH = "s2ac_l2a", "s2ac_cs", "s2ac_region"
_MAX_ERROR_M = 100  # tolerance of geometry operations; scenes are 110 km wide
_SELECTORS = ("system:index", STRATUM, CLOUD_PROPERTY, "system:time_start", "MGRS_TILE")


# --- regions and dates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """What to sample: a country's first-level units, some of them, or GeoJSON features."""

    label: str
    states: tuple[str, ...] | None = None  # None: every unit of the country
    features: tuple[tuple[str, dict[str, Any]], ...] | None = None  # GeoJSON (name, geometry)


def _is_geojson(text: str) -> bool:
    return text.lower().endswith((".geojson", ".json")) or storage.is_gcs(text)


def parse_region(text: str, cfg: EarthEngineConfig) -> Region:
    """``india`` (the country in ``cfg.country``), ``Kerala,Goa``, or a GeoJSON file/URI."""
    text = text.strip()
    if not text:
        raise ConfigError("data.earthengine.region is empty: give a country, states or GeoJSON")
    if _is_geojson(text) or os.path.isfile(text):
        return Region(label=text, features=tuple(read_geojson(text)))
    if text.lower() == cfg.country.lower():
        return Region(label=text)
    states = tuple(name.strip() for name in text.split(",") if name.strip())
    return Region(label=text, states=states)


def read_geojson(path: str) -> list[tuple[str, dict[str, Any]]]:
    """``(name, geometry)`` per feature of a GeoJSON file; names from name/NAME/ADM1_NAME."""
    try:
        document = json.loads(storage.read_bytes(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(path, f"not valid GeoJSON ({exc})") from None
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "FeatureCollection":
        features = document.get("features") or []
    elif kind == "Feature":
        features = [document]
    elif kind == "GeometryCollection" or (isinstance(kind, str) and "coordinates" in document):
        features = [{"type": "Feature", "geometry": document, "properties": {}}]
    else:
        raise InputDataError(path, f"GeoJSON type {kind!r} is not a FeatureCollection, "
                             "Feature or geometry")  # fmt: skip
    stem = Path(path).name.split(".")[0]
    found = []
    for index, feature in enumerate(features):
        geometry = (feature or {}).get("geometry")
        if not geometry or "type" not in geometry:
            raise InputDataError(path, f"feature {index} has no geometry")
        properties = feature.get("properties") or {}
        name = next((str(properties[k]) for k in ("name", "NAME", "ADM1_NAME", "state")
                     if properties.get(k)), f"{stem}-{index}")  # fmt: skip
        found.append((name, geometry))
    if not found:
        raise InputDataError(path, "the GeoJSON holds no features", "draw at least one polygon")
    return found


def parse_dates(start: str, end: str) -> tuple[date, date]:
    """Inclusive ``(start, end)`` from ISO dates; ConfigError naming the bad value."""
    try:
        first, last = date.fromisoformat(start.strip()), date.fromisoformat(end.strip())
    except ValueError:
        raise ConfigError(
            f"dates {start!r}..{end!r}: expected YYYY-MM-DD (data.earthengine.start/end)"
        ) from None
    if last < first:
        raise ConfigError(f"end date {end} is before start date {start}")
    return first, last


def strata_collection(region: Region, cfg: EarthEngineConfig) -> ee.FeatureCollection:
    """One feature per stratum, named in property ``s2ac_stratum``."""
    if region.features is not None:
        return ee.FeatureCollection(
            [
                ee.Feature(ee.Geometry(geometry), {STRATUM: name})
                for name, geometry in region.features
            ]
        )
    units = ee.FeatureCollection(cfg.boundaries).filter(ee.Filter.eq("ADM0_NAME", cfg.country))
    if region.states is not None:
        units = units.filter(ee.Filter.inList("ADM1_NAME", list(region.states)))
    return units.map(lambda unit: unit.set(STRATUM, unit.get("ADM1_NAME")))


# --- collections ------------------------------------------------------------------------------


def paired_collection(where: ee.Filter, max_cloud_percent: float | None) -> ee.ImageCollection:
    """L1C scenes matching ``where`` with their L2A (property ``s2ac_l2a``) and Cloud Score+
    (``s2ac_cs``) images, joined on ``system:index``; scenes lacking either are dropped."""
    l1c = ee.ImageCollection(EE_L1C_COLLECTION).filter(where)
    if max_cloud_percent is not None:
        l1c = l1c.filter(ee.Filter.lte(CLOUD_PROPERTY, max_cloud_percent))
    l2a = ee.ImageCollection(EE_L2A_COLLECTION).filter(where)
    cloud_score = ee.ImageCollection(CLOUD_SCORE_PLUS).filter(where)
    same_scene = ee.Filter.equals(leftField="system:index", rightField="system:index")
    with_l2a = ee.ImageCollection(ee.Join.saveFirst(_L2A_MATCH).apply(l1c, l2a, same_scene))
    return ee.ImageCollection(ee.Join.saveFirst(_CS_MATCH).apply(with_l2a, cloud_score, same_scene))


def training_pair(scene: ee.Image, cloud_score_threshold: float) -> ee.Image:
    """Bands ``toa_B2..toa_B8, sr_B2..sr_B8`` as float reflectance, cloudy pixels masked."""
    scene = ee.Image(scene)
    bands = list(BAND_NAMES)
    toa = scene.select(bands, list(TOA_KEYS))
    sr = ee.Image(scene.get(_L2A_MATCH)).select(bands, list(SR_KEYS))
    clear = ee.Image(scene.get(_CS_MATCH)).select(CLOUD_SCORE_BAND).gte(cloud_score_threshold)
    return toa.addBands(sr).multiply(REFLECTANCE_SCALE).toFloat().updateMask(clear)


def scene_image(scene: Scene, cloud_score_threshold: float) -> ee.Image:
    """The training pair of one scene, through the same joins as the listing."""
    day = scene.time.date()
    where = ee.Filter.And(
        ee.Filter.date(day.isoformat(), (day + timedelta(days=1)).isoformat()),  # indexed: cheap
        ee.Filter.eq("system:index", scene.index),
    )
    return training_pair(paired_collection(where, None).first(), cloud_score_threshold)


# --- scenes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One L1C/L2A pair found in a stratum."""

    index: str  # system:index, e.g. 20231004T050701_20231004T051809_T43QGU
    stratum: str
    cloud_percent: float
    time: datetime
    tile: str  # MGRS tile, e.g. 43QGU

    @property
    def crs(self) -> str:
        """UTM zone of the MGRS tile as an EPSG code (326zz north, 327zz south)."""
        match = re.match(r"(\d{1,2})([C-X])", self.tile)
        if not match:
            raise EarthEngineError(f"scene {self.index}: MGRS tile {self.tile!r} not understood")
        zone, band = int(match.group(1)), match.group(2)
        return f"EPSG:{32600 + zone if band >= 'N' else 32700 + zone}"


@dataclass(frozen=True)
class SceneListing:
    """What :func:`find_scenes` found."""

    region: Region
    start: date
    end: date
    strata: tuple[str, ...]
    scenes: tuple[Scene, ...]


def _listing(region: Region, start: date, end: date, cfg: EarthEngineConfig) -> ee.Dictionary:
    strata = strata_collection(region, cfg)
    where = ee.Filter.And(
        ee.Filter.date(start.isoformat(), (end + timedelta(days=1)).isoformat()),
        ee.Filter.bounds(strata),
    )
    pairs = paired_collection(where, cfg.max_cloud_percent)
    overlaps = ee.Filter.intersects(leftField=".geo", rightField=".geo", maxError=_MAX_ERROR_M)
    tagged = ee.ImageCollection(ee.Join.saveFirst(_REGION_MATCH).apply(pairs, strata, overlaps))
    tagged = tagged.map(
        lambda scene: scene.set(STRATUM, ee.Feature(scene.get(_REGION_MATCH)).get(STRATUM))
    )
    rows = tagged.reduceColumns(ee.Reducer.toList(len(_SELECTORS)), list(_SELECTORS)).get("list")
    known = (
        ee.List([])
        if region.features is not None
        else ee.FeatureCollection(cfg.boundaries)
        .filter(ee.Filter.eq("ADM0_NAME", cfg.country))
        .aggregate_array("ADM1_NAME")
    )
    return ee.Dictionary(
        {"strata": strata.aggregate_array(STRATUM), "images": rows, "known": known}
    )


def find_scenes(client: EarthEngine, cfg: EarthEngineConfig, region: Region) -> SceneListing:
    """Every pair in ``region`` between ``cfg.start`` and ``cfg.end`` (inclusive), per stratum.

    Raises:
        InputDataError: the region matches no stratum, or no scene passes the filters (the
            message names the region and the dates).
    """
    start, end = parse_dates(cfg.start, cfg.end)
    answer = client.call(
        _listing(region, start, end, cfg).getInfo, f"listing scenes of {region.label}"
    )
    strata = tuple(answer.get("strata") or ())
    if not strata:
        known = answer.get("known") or []
        hint = f"known names: {', '.join(sorted(known))}" if known else "check the region"
        raise InputDataError(
            region.label, f"matches no region in {cfg.boundaries} for {cfg.country}", hint
        )
    missing = sorted(set(region.states or ()) - set(strata))
    if missing:
        log.warning("%s: no boundary named %s in %s", region.label, ", ".join(missing),
                    cfg.boundaries)  # fmt: skip
    scenes: dict[str, Scene] = {}
    for index, stratum, cloud, millis, tile in answer.get("images") or []:
        when = datetime.fromtimestamp(millis / 1000, tz=UTC)
        scenes.setdefault(index, Scene(index, stratum, float(cloud), when, str(tile)))
    if not scenes:
        raise InputDataError(
            region.label,
            f"no Sentinel-2 L1C scene with an L2A pair, Cloud Score+ and at most "
            f"{cfg.max_cloud_percent:g}% cloud between {start} and {end}",
            "widen the dates, raise data.earthengine.max_cloud_percent or check the region",
        )
    ordered = sorted(scenes.values(), key=lambda s: (s.stratum, s.time, s.index))
    return SceneListing(region, start, end, strata, tuple(ordered))


# --- stratified sampling ----------------------------------------------------------------------


def allocate(capacity: Mapping[str, int], n: int, rng: np.random.Generator) -> dict[str, int]:
    """Split ``n`` over strata as evenly as their ``capacity`` allows (water-filling).

    Each stratum gets an equal share; strata with fewer items give what they cannot use to the
    others; the last indivisible remainder goes to randomly chosen strata.
    """
    quota = dict.fromkeys(sorted(capacity), 0)
    remaining = min(n, sum(capacity.values()))
    while remaining > 0:
        open_ = [name for name in quota if quota[name] < capacity[name]]
        share = remaining // len(open_)
        if share == 0:
            for name in rng.permutation(open_)[:remaining]:
                quota[str(name)] += 1
            break
        for name in open_:
            take = min(share, capacity[name] - quota[name])
            quota[name] += take
            remaining -= take
    return quota


def stratified_sample(scenes: Sequence[Scene], n: int, seed: int) -> list[Scene]:
    """Up to ``n`` scenes spread evenly over strata, drawn at random within each (seeded).

    The result does not depend on the order of ``scenes``; it is sorted by stratum and time.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    groups: dict[str, list[Scene]] = {}
    for scene in sorted(scenes, key=lambda s: (s.stratum, s.index)):
        groups.setdefault(scene.stratum, []).append(scene)
    rng = np.random.default_rng(seed)
    quota = allocate({name: len(group) for name, group in groups.items()}, n, rng)
    chosen: list[Scene] = []
    for name in sorted(groups):
        picks = rng.choice(len(groups[name]), size=quota[name], replace=False)
        chosen.extend(groups[name][int(i)] for i in picks)
    return sorted(chosen, key=lambda s: (s.stratum, s.time, s.index))


def share_by_stratum(scenes: Sequence[Scene]) -> dict[str, int]:
    """Number of scenes per stratum, sorted by name."""
    counts: dict[str, int] = {}
    for scene in scenes:
        counts[scene.stratum] = counts.get(scene.stratum, 0) + 1
    return dict(sorted(counts.items()))


def chip_centres(
    client: EarthEngine, scenes: Sequence[Scene], region: Region, cfg: EarthEngineConfig,
    batch: int = 100,
) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Centre (UTM metres, in each scene's CRS) of each scene's footprint inside its stratum.

    Scenes whose footprint no longer intersects the stratum are left out (with a warning).
    """
    strata = strata_collection(region, cfg)
    centres: dict[str, tuple[float, float]] = {}
    for first in track(range(0, len(scenes), batch), "Locating chips"):
        part = scenes[first : first + batch]
        values = []
        for scene in part:
            footprint = ee.Image(f"{EE_L1C_COLLECTION}/{scene.index}").geometry()
            area = strata.filter(ee.Filter.eq(STRATUM, scene.stratum)).geometry(_MAX_ERROR_M)
            inside = footprint.intersection(area, _MAX_ERROR_M).centroid(_MAX_ERROR_M)
            point = inside.transform(scene.crs, 1).coordinates()
            values.append(ee.Algorithms.If(footprint.intersects(area, _MAX_ERROR_M), point, []))
        query = ee.Dictionary.fromLists([scene.index for scene in part], values)
        answer = client.call(query.getInfo, f"locating {len(part)} chips")
        for scene in part:
            coordinates = answer.get(scene.index) or []
            if len(coordinates) == 2 and all(math.isfinite(c) for c in coordinates):
                centres[scene.index] = (float(coordinates[0]), float(coordinates[1]))
            else:
                log.warning("scene %s does not overlap %s; skipped", scene.index, scene.stratum)
    return centres
