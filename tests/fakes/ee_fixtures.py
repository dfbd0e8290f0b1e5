"""Pytest fixtures around the fake Earth Engine. Import the fixture functions into a test module:

    from fakes.ee_fixtures import ee_fake_fixture, ee_key_fixture  # noqa: F401

Fixture names (``ee_fake``, ``ee_key``, ``ee_server``) differ from the function names, so test
arguments do not shadow the imports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fakes.earthengine import FakeEarthEngine

PROJECT = "test-project"
CLIENT_EMAIL = f"s2ac-export@{PROJECT}.iam.gserviceaccount.com"


def write_service_account_key(
    path: Path, token_uri: str, project_id: str | None = PROJECT
) -> tuple[Path, str]:
    """A real service-account JSON key (fresh RSA key) whose token endpoint is ``token_uri``.

    Returns the path and a fragment of the private key, to check that no message leaks it.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    if project_id:
        info["project_id"] = project_id
    path.write_text(json.dumps(info))
    return path, pem.splitlines()[5]


@pytest.fixture(scope="session", name="ee_server")
def ee_server_fixture() -> Iterator[FakeEarthEngine]:
    """One fake Earth Engine for the session."""
    with FakeEarthEngine(project=PROJECT) as fake:
        yield fake


@pytest.fixture(name="ee_fake")
def ee_fake_fixture(ee_server: FakeEarthEngine) -> FakeEarthEngine:
    """The session's fake with recorded requests, scripted errors and operations cleared."""
    ee_server.reset()
    return ee_server


@pytest.fixture(scope="session", name="ee_key")
def ee_key_fixture(
    ee_server: FakeEarthEngine, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """(service-account key file for the fake's token endpoint, a line of its private key)."""
    folder = tmp_path_factory.mktemp("ee-key")
    return write_service_account_key(folder / "key.json", ee_server.token_uri)
