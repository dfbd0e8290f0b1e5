"""s2ac.data.earthengine.client: the real earthengine-api client against a local fake of the REST
API: the token flow, credentials and projects, and the one retry policy every request goes through.

The fake (tests/fakes/earthengine.py) serves the discovery document and algorithm list shipped
in the installed wheel and records every request, so these tests assert what a user's client
would send to Google. The retry tests use a scene listing as the request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fakes.earthengine import CLIENT_EMAIL, FakeEarthEngine, write_service_account_key
from fakes.ee_fixtures import ee_fake_fixture, ee_key_fixture, ee_server_fixture  # noqa: F401
from s2ac.config import EarthEngineConfig
from s2ac.data.earthengine import client as C
from s2ac.data.earthengine import scenes as S
from s2ac.errors import ConfigError, CredentialsError, EarthEngineError, EarthEngineQuotaError

SEASON = ("2023-10-01", "2023-12-31")  # post-monsoon: the clearest season over most of India


def make_cfg(fake: FakeEarthEngine, key: Path, **values: Any) -> EarthEngineConfig:
    settings = {"start": SEASON[0], "end": SEASON[1], "n_images": 6, **values}
    return EarthEngineConfig(api_url=fake.url, service_account_key=str(key), **settings)


# --- connection and credentials ---------------------------------------------------------------


def test_connect_runs_the_real_client_through_the_service_account_token_flow(ee_fake, ee_key):
    client = C.connect(make_cfg(ee_fake, ee_key[0]))
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
    cfg = C.with_environment(EarthEngineConfig(), environ)
    assert (cfg.project, cfg.api_url) == ("s2ac-prod", ee_fake.url)
    assert C.with_environment(EarthEngineConfig(project="mine"), environ).project == "mine"
    client = C.connect(cfg)
    assert client.credentials_source == "application default credentials"
    assert ee_fake.recorded("/algorithms")[0].path == "/v1/projects/s2ac-prod/algorithms"


def test_missing_or_unparsable_key_file_is_named_without_its_content(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(CredentialsError, match=r"missing\.json: service-account key file not"):
        C.connect(EarthEngineConfig(service_account_key=str(missing)))
    broken = tmp_path / "broken.json"
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    broken.write_text(json.dumps({
        "type": "service_account", "client_email": CLIENT_EMAIL, "token_uri": "http://x/token",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n",
    }))  # fmt: skip
    with pytest.raises(CredentialsError) as info:
        C.connect(EarthEngineConfig(service_account_key=str(broken)))
    assert str(broken) in str(info.value) and "not a usable service-account key" in str(info.value)
    assert secret not in str(info.value) and info.value.__cause__ is None


def test_refused_credentials_fail_clearly_and_send_nothing_else(ee_fake, ee_key):
    ee_fake.reject_tokens = True
    with pytest.raises(CredentialsError) as info:
        C.connect(make_cfg(ee_fake, ee_key[0]))
    message = str(info.value)
    assert "Google refused an access token for the service-account key" in message
    assert "(invalid_grant: Invalid JWT Signature.)" in message
    assert str(ee_key[0]) in message and ee_key[1] not in message
    assert ee_fake.recorded("/token") and not ee_fake.recorded("/v1/")


def test_api_refusing_the_project_is_a_credentials_error(ee_fake, ee_key):
    ee_fake.inject("/algorithms", 403, message="Permission denied on project test-project")
    with pytest.raises(CredentialsError, match=r"HTTP 403: Permission denied") as info:
        C.connect(make_cfg(ee_fake, ee_key[0]))
    assert ee_key[1] not in str(info.value)


def test_no_project_anywhere_is_a_config_error(ee_fake, tmp_path):
    key, _ = write_service_account_key(tmp_path / "key.json", ee_fake.token_uri, project_id=None)
    with pytest.raises(ConfigError, match="no Earth Engine project"):
        C.connect(EarthEngineConfig(api_url=ee_fake.url, service_account_key=str(key)))


# --- retries ----------------------------------------------------------------------------------


def test_quota_429_is_retried_with_exponential_backoff_then_succeeds(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0])
    sleeps: list[float] = []
    client = C.connect(cfg, sleep=sleeps.append)
    ee_fake.inject("value:compute", 429, times=2)
    listing = S.find_scenes(client, cfg, S.parse_region("india", cfg))
    assert listing.scenes
    assert client.retries == 2 and sleeps == [2.0, 4.0]
    assert [r.status for r in ee_fake.recorded("value:compute")] == [429, 429, 200]


def test_quota_429_through_every_retry_raises_a_quota_error(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], max_retries=2)
    sleeps: list[float] = []
    client = C.connect(cfg, sleep=sleeps.append)
    ee_fake.inject("value:compute", 429, times=10, message="Too many concurrent aggregations.")
    with pytest.raises(EarthEngineQuotaError, match="after 3 attempts") as info:
        S.find_scenes(client, cfg, S.parse_region("india", cfg))
    assert "listing scenes of india" in str(info.value)
    assert "Too many concurrent aggregations" in str(info.value)
    assert sleeps == [2.0, 4.0] and len(ee_fake.recorded("value:compute")) == 3


def test_client_errors_are_not_retried(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0])
    client = C.connect(cfg, sleep=lambda s: pytest.fail("a 400 must not be retried"))
    ee_fake.inject("value:compute", 400, message="Collection.loadTable: Table not found.")
    with pytest.raises(EarthEngineError, match=r"\(HTTP 400\): Collection.loadTable"):
        S.find_scenes(client, cfg, S.parse_region("india", cfg))
    assert client.retries == 0
