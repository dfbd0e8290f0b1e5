"""s2ac.data.earthengine.scenes: regions, the serialized listing expression the real client
sends to a local fake of the REST API, empty selections, and stratified sampling.

The fake (tests/fakes/earthengine.py) serves the discovery document and algorithm list shipped
in the installed wheel and records every request, so these tests assert what a user's client
would send to Google.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakes.earthengine import FakeEarthEngine, constant, constants, function_names, invocations
from fakes.ee_fixtures import ee_fake_fixture, ee_key_fixture, ee_server_fixture  # noqa: F401
from s2ac.bands import EE_L1C_COLLECTION, EE_L2A_COLLECTION
from s2ac.config import EarthEngineConfig
from s2ac.data.earthengine import client as C
from s2ac.data.earthengine import scenes as S
from s2ac.errors import ConfigError, InputDataError

SEASON = ("2023-10-01", "2023-12-31")  # post-monsoon: the clearest season over most of India


def make_cfg(fake: FakeEarthEngine, key: Path, **values: Any) -> EarthEngineConfig:
    settings = {"start": SEASON[0], "end": SEASON[1], "n_images": 6, **values}
    return EarthEngineConfig(api_url=fake.url, service_account_key=str(key), **settings)


def listing_expression(fake: FakeEarthEngine) -> dict[str, Any]:
    (request,) = [r for r in fake.recorded("value:compute") if r.status == 200]
    return request.body["expression"]


# --- the listing expression -------------------------------------------------------------------


def test_listing_pairs_l1c_with_l2a_and_cloud_score_on_system_index(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0])
    listing = S.find_scenes(C.connect(cfg), cfg, S.parse_region("india", cfg))
    expression = listing_expression(ee_fake)
    names = set(function_names(expression))
    assert {
        "Collection.filter",
        "Join.saveFirst",
        "Join.apply",
        "Collection.reduceColumns",
    } <= names
    loaded = {constant(a["id"]) for a in invocations(expression, "ImageCollection.load")}
    assert loaded == {EE_L1C_COLLECTION, EE_L2A_COLLECTION, S.CLOUD_SCORE_PLUS}
    tables = {constant(a["tableId"]) for a in invocations(expression, "Collection.loadTable")}
    assert tables == {"FAO/GAUL/2015/level1"}
    equals = [
        (constant(a.get("leftField")), constant(a.get("rightField") or a.get("rightValue")))
        for a in invocations(expression, "Filter.equals")
    ]
    assert ("system:index", "system:index") in equals and ("ADM0_NAME", "India") in equals
    match_keys = {constant(a["matchKey"]) for a in invocations(expression, "Join.saveFirst")}
    assert match_keys == {"s2ac_l2a", "s2ac_cs", "s2ac_region"}
    (dates,) = {
        (constant(a["start"]), constant(a["end"])) for a in invocations(expression, "DateRange")
    }
    assert dates == ("2023-10-01", "2024-01-01")  # inclusive end -> exclusive next day
    cloud = [
        constant(a["rightValue"])
        for a in invocations(expression, "Filter.greaterThan")
        if constant(a["leftField"]) == "CLOUDY_PIXEL_PERCENTAGE"
    ]
    assert cloud and set(cloud) == {20.0} and "Filter.not" in names  # lte = not(gt)
    assert any(
        constant(a["leftField"]) == ".geo" for a in invocations(expression, "Filter.intersects")
    )
    (selectors,) = {
        tuple(constant(a["selectors"])) for a in invocations(expression, "Collection.reduceColumns")
    }
    assert selectors == ("system:index", "s2ac_stratum", "CLOUDY_PIXEL_PERCENTAGE",
                         "system:time_start", "MGRS_TILE")  # fmt: skip
    assert len(listing.strata) == 35 and len(listing.scenes) > 100
    assert {s.stratum for s in listing.scenes} <= set(listing.strata)
    assert all(s.cloud_percent <= 20 for s in listing.scenes)
    assert all(
        listing.start <= s.time.date() <= listing.end for s in listing.scenes
    )  # fmt: skip


def test_named_states_are_filtered_on_adm1_name(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], region="Kerala, Tamil Nadu")
    region = S.parse_region(cfg.region, cfg)
    assert region.states == ("Kerala", "Tamil Nadu")
    listing = S.find_scenes(C.connect(cfg), cfg, region)
    expression = listing_expression(ee_fake)
    (listed,) = {
        tuple(constant(a["leftValue"]))
        for a in invocations(expression, "Filter.listContains")
        if constant(a["rightField"]) == "ADM1_NAME"
    }
    assert listed == ("Kerala", "Tamil Nadu")
    assert listing.strata == ("Kerala", "Tamil Nadu")
    assert {s.stratum for s in listing.scenes} == {"Kerala", "Tamil Nadu"}


def test_geojson_features_are_the_strata(ee_fake, ee_key, tmp_path):
    path = tmp_path / "fields.geojson"
    ring = [[76.2, 10.0], [76.6, 10.0], [76.6, 10.4], [76.2, 10.4], [76.2, 10.0]]
    shifted = [[x + 1, y + 1] for x, y in ring]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "paddy"},
         "geometry": {"type": "Polygon", "coordinates": [ring]}},
        {"type": "Feature", "properties": {},
         "geometry": {"type": "Polygon", "coordinates": [shifted]}},
    ]}))  # fmt: skip
    cfg = make_cfg(ee_fake, ee_key[0], region=str(path))
    listing = S.find_scenes(C.connect(cfg), cfg, S.parse_region(cfg.region, cfg))
    assert listing.strata == ("paddy", "fields-1")
    expression = listing_expression(ee_fake)
    assert not invocations(expression, "Collection.loadTable")
    assert "paddy" in constants(expression)


def test_bad_geojson_names_the_file(tmp_path):
    path = tmp_path / "region.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}')
    with pytest.raises(InputDataError, match=r"region\.geojson: feature 0 has no geometry"):
        S.parse_region(str(path), EarthEngineConfig())
    path.write_text("{not json")
    with pytest.raises(InputDataError, match=r"region\.geojson: not valid GeoJSON"):
        S.parse_region(str(path), EarthEngineConfig())


# --- empty selections -------------------------------------------------------------------------


def test_unknown_state_names_the_region_and_the_known_names(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], region="Atlantis")
    with pytest.raises(InputDataError) as info:
        S.find_scenes(C.connect(cfg), cfg, S.parse_region(cfg.region, cfg))
    message = str(info.value)
    assert message.startswith("Atlantis: matches no region in FAO/GAUL/2015/level1 for India")
    assert "known names: Andaman and Nicobar" in message and "Kerala" in message


def test_no_scene_in_the_dates_names_region_and_dates(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], start="2023-10-01", end="2023-10-03", max_cloud_percent=0)
    with pytest.raises(InputDataError) as info:
        S.find_scenes(C.connect(cfg), cfg, S.parse_region("india", cfg))
    message = str(info.value)
    assert message.startswith("india: no Sentinel-2 L1C scene")
    assert "between 2023-10-01 and 2023-10-03" in message and "at most 0% cloud" in message


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [("2023-13-01", "2023-12-31", "expected YYYY-MM-DD"), ("2023-12-01", "2023-11-01", "before")],
)
def test_bad_dates_are_config_errors(start, end, problem):
    with pytest.raises(ConfigError, match=problem):
        S.parse_dates(start, end)


# --- scenes and sampling ----------------------------------------------------------------------


def scenes_per(counts: dict[str, int]) -> list[S.Scene]:
    from datetime import UTC, datetime, timedelta

    day = datetime(2023, 10, 1, tzinfo=UTC)
    return [
        S.Scene(f"{name}-{i:03d}", name, 5.0, day + timedelta(days=i), "43QGU")
        for name, n in counts.items()
        for i in range(n)
    ]


def test_scene_crs_is_the_utm_zone_of_its_mgrs_tile():
    scene = scenes_per({"A": 1})[0]
    assert scene.crs == "EPSG:32643"
    assert S.Scene("x", "A", 0, scene.time, "21HUB").crs == "EPSG:32721"  # south of the equator
    assert S.Scene("x", "A", 0, scene.time, "4QFJ").crs == "EPSG:32604"


def test_allocation_is_even_and_small_strata_give_their_share_away():
    rng = np.random.default_rng(0)
    assert S.allocate({"A": 100, "B": 100, "C": 3, "D": 10}, 40, rng) in (
        {"A": 14, "B": 13, "C": 3, "D": 10},
        {"A": 13, "B": 14, "C": 3, "D": 10},
    )
    assert S.allocate({"A": 1, "B": 5}, 10, rng) == {"A": 1, "B": 5}  # fewer than asked: all
    assert S.allocate({"A": 4, "B": 4, "C": 4}, 12, rng) == {"A": 4, "B": 4, "C": 4}


def test_stratified_sample_is_seeded_order_independent_and_without_repeats():
    scenes = scenes_per({"A": 100, "B": 100, "C": 3, "D": 10})
    sample = S.stratified_sample(scenes, 40, seed=1)
    counts = S.share_by_stratum(sample)
    assert counts["C"] == 3 and counts["D"] == 10 and sorted((counts["A"], counts["B"])) == [13, 14]
    assert len({s.index for s in sample}) == 40
    assert S.stratified_sample(list(reversed(scenes)), 40, seed=1) == sample
    assert S.stratified_sample(scenes, 40, seed=2) != sample


def test_stratified_sample_is_uniform_within_strata_and_fair_between_them():
    scenes = scenes_per({"A": 100, "B": 100, "C": 3, "D": 10})
    picked: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    seeds = range(400)
    for seed in seeds:
        sample = S.stratified_sample(scenes, 40, seed=seed)
        picked.update(s.index for s in sample if s.stratum == "A")
        counts = S.share_by_stratum(sample)
        extra["A" if counts["A"] == 14 else "B"] += 1
    # Each scene of A is picked with probability 13.5/100: 54 of 400 on average (sd ~6.8).
    frequencies = [picked[f"A-{i:03d}"] / len(seeds) for i in range(100)]
    assert min(frequencies) > 0.07 and max(frequencies) < 0.21
    assert 13 <= sum(frequencies) <= 14  # A gets 13 or 14 scenes per draw
    assert 150 < extra["A"] < 250  # the odd scene goes to A or B about equally often
