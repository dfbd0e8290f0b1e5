"""s2ac.data.earthengine: the real earthengine-api client against a local fake of the REST API.

The fake (tests/fakes/earthengine.py) serves the discovery document and algorithm list shipped
in the installed wheel and records every request, so these tests assert what a user's client
would send to Google: the token flow, the serialized expression graphs, retries.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fakes.earthengine import (
    CLIENT_EMAIL,
    FakeEarthEngine,
    constant,
    constants,
    function_names,
    invocations,
    write_service_account_key,
)
from fakes.ee_fixtures import ee_fake_fixture, ee_key_fixture, ee_server_fixture  # noqa: F401
from s2ac.bands import EE_L1C_COLLECTION, EE_L2A_COLLECTION
from s2ac.config import EarthEngineConfig
from s2ac.data import earthengine as E
from s2ac.errors import (
    ConfigError,
    CredentialsError,
    EarthEngineQuotaError,
    InputDataError,
)

SEASON = ("2023-10-01", "2023-12-31")  # post-monsoon: the clearest season over most of India


def make_cfg(fake: FakeEarthEngine, key: Path, **values: Any) -> EarthEngineConfig:
    settings = {"start": SEASON[0], "end": SEASON[1], "n_images": 6, **values}
    return EarthEngineConfig(api_url=fake.url, service_account_key=str(key), **settings)


def listing_expression(fake: FakeEarthEngine) -> dict[str, Any]:
    (request,) = [r for r in fake.recorded("value:compute") if r.status == 200]
    return request.body["expression"]


# --- connection and credentials ---------------------------------------------------------------


def test_connect_runs_the_real_client_through_the_service_account_token_flow(ee_fake, ee_key):
    client = E.connect(make_cfg(ee_fake, ee_key[0]))
    assert client.project == "test-project"  # from the key file's project_id
    (token,) = ee_fake.recorded("/token")
    assert token.body["iss"] == CLIENT_EMAIL
    assert "https://www.googleapis.com/auth/earthengine" in token.body["scope"].split()
    discovery = ee_fake.recorded("/$discovery/rest")
    assert discovery and discovery[0].query["version"] == ["v1"]
    (algorithms,) = ee_fake.recorded("/algorithms")
    assert algorithms.path == "/v1/projects/test-project/algorithms"
    assert algorithms.headers["authorization"].startswith("Bearer fake-token-")


def test_application_default_credentials_and_project_from_the_environment(
    ee_fake, ee_key, monkeypatch
):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(ee_key[0]))
    environ = {"EE_PROJECT": "s2ac-prod", "EE_API_URL": ee_fake.url}
    cfg = E.with_environment(EarthEngineConfig(), environ)
    assert (cfg.project, cfg.api_url) == ("s2ac-prod", ee_fake.url)
    assert E.with_environment(EarthEngineConfig(project="mine"), environ).project == "mine"
    client = E.connect(cfg)
    assert client.credentials_source == "application default credentials"
    assert ee_fake.recorded("/algorithms")[0].path == "/v1/projects/s2ac-prod/algorithms"


def test_missing_or_unparsable_key_file_is_named_without_its_content(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(CredentialsError, match=r"missing\.json: service-account key file not"):
        E.connect(EarthEngineConfig(service_account_key=str(missing)))
    broken = tmp_path / "broken.json"
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    broken.write_text(json.dumps({
        "type": "service_account", "client_email": CLIENT_EMAIL, "token_uri": "http://x/token",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n",
    }))  # fmt: skip
    with pytest.raises(CredentialsError) as info:
        E.connect(EarthEngineConfig(service_account_key=str(broken)))
    assert str(broken) in str(info.value) and "not a usable service-account key" in str(info.value)
    assert secret not in str(info.value) and info.value.__cause__ is None


def test_refused_credentials_fail_clearly_and_send_nothing_else(ee_fake, ee_key):
    ee_fake.reject_tokens = True
    with pytest.raises(CredentialsError) as info:
        E.connect(make_cfg(ee_fake, ee_key[0]))
    message = str(info.value)
    assert "Google refused an access token for the service-account key" in message
    assert "(invalid_grant: Invalid JWT Signature.)" in message
    assert str(ee_key[0]) in message and ee_key[1] not in message
    assert ee_fake.recorded("/token") and not ee_fake.recorded("/v1/")


def test_api_refusing_the_project_is_a_credentials_error(ee_fake, ee_key):
    ee_fake.inject("/algorithms", 403, message="Permission denied on project test-project")
    with pytest.raises(CredentialsError, match=r"HTTP 403: Permission denied") as info:
        E.connect(make_cfg(ee_fake, ee_key[0]))
    assert ee_key[1] not in str(info.value)


def test_no_project_anywhere_is_a_config_error(ee_fake, tmp_path):
    key, _ = write_service_account_key(tmp_path / "key.json", ee_fake.token_uri, project_id=None)
    with pytest.raises(ConfigError, match="no Earth Engine project"):
        E.connect(EarthEngineConfig(api_url=ee_fake.url, service_account_key=str(key)))


# --- retries ----------------------------------------------------------------------------------


def test_quota_429_is_retried_with_exponential_backoff_then_succeeds(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0])
    sleeps: list[float] = []
    client = E.connect(cfg, sleep=sleeps.append)
    ee_fake.inject("value:compute", 429, times=2)
    listing = E.find_scenes(client, cfg, E.parse_region("india", cfg))
    assert listing.scenes
    assert client.retries == 2 and sleeps == [2.0, 4.0]
    assert [r.status for r in ee_fake.recorded("value:compute")] == [429, 429, 200]


def test_quota_429_through_every_retry_raises_a_quota_error(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], max_retries=2)
    sleeps: list[float] = []
    client = E.connect(cfg, sleep=sleeps.append)
    ee_fake.inject("value:compute", 429, times=10, message="Too many concurrent aggregations.")
    with pytest.raises(EarthEngineQuotaError, match="after 3 attempts") as info:
        E.find_scenes(client, cfg, E.parse_region("india", cfg))
    assert "listing scenes of india" in str(info.value)
    assert "Too many concurrent aggregations" in str(info.value)
    assert sleeps == [2.0, 4.0] and len(ee_fake.recorded("value:compute")) == 3


def test_client_errors_are_not_retried(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0])
    client = E.connect(cfg, sleep=lambda s: pytest.fail("a 400 must not be retried"))
    ee_fake.inject("value:compute", 400, message="Collection.loadTable: Table not found.")
    with pytest.raises(E.EarthEngineError, match=r"\(HTTP 400\): Collection.loadTable"):
        E.find_scenes(client, cfg, E.parse_region("india", cfg))
    assert client.retries == 0


# --- the listing expression -------------------------------------------------------------------


def test_listing_pairs_l1c_with_l2a_and_cloud_score_on_system_index(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0])
    listing = E.find_scenes(E.connect(cfg), cfg, E.parse_region("india", cfg))
    expression = listing_expression(ee_fake)
    names = set(function_names(expression))
    assert {
        "Collection.filter",
        "Join.saveFirst",
        "Join.apply",
        "Collection.reduceColumns",
    } <= names
    loaded = {constant(a["id"]) for a in invocations(expression, "ImageCollection.load")}
    assert loaded == {EE_L1C_COLLECTION, EE_L2A_COLLECTION, E.CLOUD_SCORE_PLUS}
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
    region = E.parse_region(cfg.region, cfg)
    assert region.states == ("Kerala", "Tamil Nadu")
    listing = E.find_scenes(E.connect(cfg), cfg, region)
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
    listing = E.find_scenes(E.connect(cfg), cfg, E.parse_region(cfg.region, cfg))
    assert listing.strata == ("paddy", "fields-1")
    expression = listing_expression(ee_fake)
    assert not invocations(expression, "Collection.loadTable")
    assert "paddy" in constants(expression)


def test_bad_geojson_names_the_file(tmp_path):
    path = tmp_path / "region.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}')
    with pytest.raises(InputDataError, match=r"region\.geojson: feature 0 has no geometry"):
        E.parse_region(str(path), EarthEngineConfig())
    path.write_text("{not json")
    with pytest.raises(InputDataError, match=r"region\.geojson: not valid GeoJSON"):
        E.parse_region(str(path), EarthEngineConfig())


# --- empty selections -------------------------------------------------------------------------


def test_unknown_state_names_the_region_and_the_known_names(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], region="Atlantis")
    with pytest.raises(InputDataError) as info:
        E.find_scenes(E.connect(cfg), cfg, E.parse_region(cfg.region, cfg))
    message = str(info.value)
    assert message.startswith("Atlantis: matches no region in FAO/GAUL/2015/level1 for India")
    assert "known names: Andaman and Nicobar" in message and "Kerala" in message


def test_no_scene_in_the_dates_names_region_and_dates(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], start="2023-10-01", end="2023-10-03", max_cloud_percent=0)
    with pytest.raises(InputDataError) as info:
        E.find_scenes(E.connect(cfg), cfg, E.parse_region("india", cfg))
    message = str(info.value)
    assert message.startswith("india: no Sentinel-2 L1C scene")
    assert "between 2023-10-01 and 2023-10-03" in message and "at most 0% cloud" in message


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [("2023-13-01", "2023-12-31", "expected YYYY-MM-DD"), ("2023-12-01", "2023-11-01", "before")],
)
def test_bad_dates_are_config_errors(start, end, problem):
    with pytest.raises(ConfigError, match=problem):
        E.parse_dates(start, end)


# --- scenes and sampling ----------------------------------------------------------------------


def scenes_per(counts: dict[str, int]) -> list[E.Scene]:
    from datetime import UTC, datetime, timedelta

    day = datetime(2023, 10, 1, tzinfo=UTC)
    return [
        E.Scene(f"{name}-{i:03d}", name, 5.0, day + timedelta(days=i), "43QGU")
        for name, n in counts.items()
        for i in range(n)
    ]


def test_scene_crs_is_the_utm_zone_of_its_mgrs_tile():
    scene = scenes_per({"A": 1})[0]
    assert scene.crs == "EPSG:32643"
    assert E.Scene("x", "A", 0, scene.time, "21HUB").crs == "EPSG:32721"  # south of the equator
    assert E.Scene("x", "A", 0, scene.time, "4QFJ").crs == "EPSG:32604"


def test_allocation_is_even_and_small_strata_give_their_share_away():
    rng = E.np.random.default_rng(0)
    assert E.allocate({"A": 100, "B": 100, "C": 3, "D": 10}, 40, rng) in (
        {"A": 14, "B": 13, "C": 3, "D": 10},
        {"A": 13, "B": 14, "C": 3, "D": 10},
    )
    assert E.allocate({"A": 1, "B": 5}, 10, rng) == {"A": 1, "B": 5}  # fewer than asked: all
    assert E.allocate({"A": 4, "B": 4, "C": 4}, 12, rng) == {"A": 4, "B": 4, "C": 4}


def test_stratified_sample_is_seeded_order_independent_and_without_repeats():
    scenes = scenes_per({"A": 100, "B": 100, "C": 3, "D": 10})
    sample = E.stratified_sample(scenes, 40, seed=1)
    counts = E.share_by_stratum(sample)
    assert counts["C"] == 3 and counts["D"] == 10 and sorted((counts["A"], counts["B"])) == [13, 14]
    assert len({s.index for s in sample}) == 40
    assert E.stratified_sample(list(reversed(scenes)), 40, seed=1) == sample
    assert E.stratified_sample(scenes, 40, seed=2) != sample


def test_stratified_sample_is_uniform_within_strata_and_fair_between_them():
    scenes = scenes_per({"A": 100, "B": 100, "C": 3, "D": 10})
    picked: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    seeds = range(400)
    for seed in seeds:
        sample = E.stratified_sample(scenes, 40, seed=seed)
        picked.update(s.index for s in sample if s.stratum == "A")
        counts = E.share_by_stratum(sample)
        extra["A" if counts["A"] == 14 else "B"] += 1
    # Each scene of A is picked with probability 13.5/100: 54 of 400 on average (sd ~6.8).
    frequencies = [picked[f"A-{i:03d}"] / len(seeds) for i in range(100)]
    assert min(frequencies) > 0.07 and max(frequencies) < 0.21
    assert 13 <= sum(frequencies) <= 14  # A gets 13 or 14 scenes per draw
    assert 150 < extra["A"] < 250  # the odd scene goes to A or B about equally often
