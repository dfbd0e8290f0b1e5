"""Pytest fixtures around the fake Earth Engine. Import the fixture functions into a test module:

    from fakes.ee_fixtures import ee_fake_fixture, ee_key_fixture, ee_server_fixture  # noqa: F401

Fixture names (``ee_fake``, ``ee_key``, ``ee_server``) differ from the function names, so test
arguments do not shadow the imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.earthengine import PROJECT, FakeEarthEngine, write_service_account_key


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
