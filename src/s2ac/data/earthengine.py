"""Earth Engine: connect, find Sentinel-2 L1C/L2A pairs over a region, sample them across states.

The real data path of s2ac (exporting is :mod:`s2ac.data.ee_export`):

1. :func:`connect` initialises the earthengine-api client from a service-account key file or the
   application default credentials, for a project from config or the environment. The API URL is
   a setting (Google's by default), which is the only thing tests change: they point it at a
   local fake of the REST API, so this module runs unchanged against both.
2. :func:`paired_collection` pairs ``COPERNICUS/S2_HARMONIZED`` (L1C) with
   ``COPERNICUS/S2_SR_HARMONIZED`` (L2A) and Cloud Score+ on ``system:index`` (joins drop scenes
   missing either), filtered by dates, region and scene cloud share.
   :func:`training_pair` turns one pair into the export image: bands B2, B3, B4, B8 of both,
   renamed to the TFRecord schema (``toa_B2`` ... ``sr_B8``), scaled by 1e-4 to reflectance,
   masked where Cloud Score+ ``cs_cdf`` is below the threshold.
3. :func:`find_scenes` lists the pairs per stratum (the states of a country from a boundary
   collection such as FAO/GAUL/2015/level1, or the features of a GeoJSON file); each scene is
   assigned to the first stratum it intersects. :func:`stratified_sample` then draws N of them
   spread evenly over strata, deterministically for a seed.

Every request goes through :meth:`EarthEngine.call`: HTTP 429 and 5xx are retried with
exponential backoff (the client's own retries are switched off, so there is one policy, logged),
and failures become :mod:`s2ac.errors` types that name the request, never a credential.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import ee
import google.auth
import numpy as np
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account
from googleapiclient.errors import HttpError

from s2ac.bands import BAND_NAMES, EE_L1C_COLLECTION, EE_L2A_COLLECTION, REFLECTANCE_SCALE
from s2ac.config import EarthEngineConfig
from s2ac.console import track
from s2ac.data.patches import SR_KEYS, TOA_KEYS
from s2ac.errors import (
    ConfigError,
    CredentialsError,
    EarthEngineError,
    EarthEngineQuotaError,
    InputDataError,
)
from s2ac.io import storage

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_API_URL = "https://earthengine.googleapis.com"
SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
)
CLOUD_SCORE_PLUS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
CLOUD_SCORE_BAND = "cs_cdf"
CLOUD_PROPERTY = "CLOUDY_PIXEL_PERCENTAGE"
STRATUM = "s2ac_stratum"  # property naming the stratum (state) of a region feature or scene
_L2A_MATCH, _CS_MATCH, _REGION_MATCH = "s2ac_l2a", "s2ac_cs", "s2ac_region"
_MAX_ERROR_M = 100  # tolerance of geometry operations; scenes are 110 km wide
_SELECTORS = ("system:index", STRATUM, CLOUD_PROPERTY, "system:time_start", "MGRS_TILE")
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_NO_CREDENTIALS = (
    "no Google credentials for Earth Engine: set data.earthengine.service_account_key to a "
    "service-account key file, set GOOGLE_APPLICATION_CREDENTIALS, or run "
    "`gcloud auth application-default login`"
)


# --- connection -------------------------------------------------------------------------------


def with_environment(cfg: EarthEngineConfig, environ: Mapping[str, str]) -> EarthEngineConfig:
    """Fill unset ``project`` / ``api_url`` from EE_PROJECT or GOOGLE_CLOUD_PROJECT / EE_API_URL.

    Called at the edge (CLI, components): library code gets everything through the config.
    """
    update: dict[str, Any] = {}
    project = environ.get("EE_PROJECT") or environ.get("GOOGLE_CLOUD_PROJECT")
    if cfg.project is None and project:
        update["project"] = project
    if cfg.api_url is None and environ.get("EE_API_URL"):
        update["api_url"] = environ["EE_API_URL"]
    return cfg.model_copy(update=update) if update else cfg


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: waits ``initial * multiplier**k`` seconds, at most ``maximum``."""

    initial: float = 2.0
    multiplier: float = 2.0
    maximum: float = 64.0
    attempts: int = 6  # 1 + retries

    def delays(self) -> list[float]:
        return [
            min(self.initial * self.multiplier**k, self.maximum) for k in range(self.attempts - 1)
        ]


def http_status(exc: BaseException) -> int | None:
    """HTTP status behind an earthengine-api error (it keeps the HttpError as the context)."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, HttpError):
            return int(candidate.resp.status)
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, HttpError):
        return str(exc._get_reason()).strip()  # the server's message; the URL is not needed
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@dataclass
class EarthEngine:
    """An initialised client: every request goes through :meth:`call` (retries, clear errors)."""

    project: str
    url: str
    credentials_source: str
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    retries: int = 0  # transient failures retried so far (for reports and tests)

    def call(self, request: Callable[[], T], what: str) -> T:
        """Run one Earth Engine request; retry 429/5xx/connection errors with backoff."""
        delays = self.backoff.delays()
        for attempt in range(len(delays) + 1):
            try:
                return request()
            except (ee.EEException, HttpError, auth_exceptions.TransportError, OSError) as exc:
                status = http_status(exc)
                transient = status in _TRANSIENT or (
                    status is None and isinstance(exc, auth_exceptions.TransportError | OSError)
                )
                if not transient or attempt == len(delays):
                    raise self._error(exc, what, status, attempt + 1) from None
                self.retries += 1
                detail = f"HTTP {status}" if status else type(exc).__name__
                log.warning("%s: Earth Engine answered %s; retry %d/%d in %.0f s",
                            what, detail, attempt + 1, len(delays), delays[attempt])  # fmt: skip
                self.sleep(delays[attempt])
            except auth_exceptions.RefreshError as exc:
                raise self._refused(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, exc: auth_exceptions.RefreshError) -> CredentialsError:
        # args[0] is the token endpoint's error code and description, never key material.
        reason = str(exc.args[0]).splitlines()[0] if exc.args else "refused"
        return CredentialsError(
            f"Earth Engine: Google refused an access token for the {self.credentials_source} "
            f"({reason}); check the key file or run `gcloud auth application-default login`"
        )

    def _error(self, exc: BaseException, what: str, status: int | None, tries: int) -> Exception:
        reason = _reason(exc)
        if status in (401, 403):
            return CredentialsError(
                f"Earth Engine refused {what} (HTTP {status}: {reason}); check that the "
                f"{self.credentials_source} may use Earth Engine in project {self.project}"
            )
        if status == 429:
            return EarthEngineQuotaError(
                f"{what}: Earth Engine quota or concurrency limit (HTTP 429: {reason}) after "
                f"{tries} attempts; wait, run fewer requests at once, or raise "
                "data.earthengine.max_retries"
            )
        where = f" (HTTP {status})" if status else ""
        return EarthEngineError(f"{what}: Earth Engine error{where}: {reason}")


def load_credentials(cfg: EarthEngineConfig) -> tuple[Any, str | None, str]:
    """(credentials, their project or None, a description for messages without secrets)."""
    key = cfg.service_account_key
    if key:
        source = f"service-account key {key}"
        if not os.path.isfile(key):
            raise CredentialsError(f"{key}: service-account key file not found")
        try:
            credentials = service_account.Credentials.from_service_account_file(key, scopes=SCOPES)
        except (ValueError, KeyError, TypeError):  # json.JSONDecodeError is a ValueError
            raise CredentialsError(
                f"{key}: not a usable service-account key file (expected the JSON key of a "
                "service account, with client_email, private_key and token_uri)"
            ) from None  # the parser's message may quote the key
        return credentials, credentials.project_id, source
    try:
        credentials, project = google.auth.default(scopes=SCOPES)
    except auth_exceptions.DefaultCredentialsError:
        raise CredentialsError(_NO_CREDENTIALS) from None
    return credentials, project, "application default credentials"


def connect(cfg: EarthEngineConfig, *, sleep: Callable[[float], None] = time.sleep) -> EarthEngine:
    """Initialise Earth Engine for ``cfg`` (credentials, project, API URL) and return a client.

    Raises:
        CredentialsError: no usable credentials, or Earth Engine refused them.
        ConfigError: no project could be determined.
    """
    credentials, key_project, source = load_credentials(cfg)
    project = cfg.project or key_project
    if not project:
        raise ConfigError(
            "no Earth Engine project: set data.earthengine.project (or EE_PROJECT / "
            "GOOGLE_CLOUD_PROJECT) to a Cloud project registered for Earth Engine"
        )
    url = (cfg.api_url or DEFAULT_API_URL).rstrip("/")
    client = EarthEngine(project, url, source, Backoff(attempts=cfg.max_retries + 1), sleep)
    ee.Reset()  # a fresh start: otherwise a second Initialize skips checking the new settings
    ee.data.setMaxRetries(0)  # one retry policy, ours (logged, injectable sleep)
    client.call(
        lambda: ee.Initialize(credentials, url=url, project=project), "initialising Earth Engine"
    )
    log.info("Earth Engine initialised: project %s, %s, %s", project, url, source)
    return client


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
