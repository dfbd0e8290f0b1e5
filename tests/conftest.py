"""Shared pytest fixtures. Each service or helper has its own section below."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# ==============================================================================================
# Cloud Storage emulator (gcp-storage-emulator) for tests marked `service`
# ==============================================================================================

GCS_TEST_BUCKET = "s2ac-test"
_EMULATOR_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class GcsEmulator:
    """A running emulator: ``host`` is what STORAGE_EMULATOR_HOST is set to."""

    host: str
    bucket: str

    def uri(self, key: str = "") -> str:
        return f"gs://{self.bucket}/{key}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _emulator_answers(host: str, bucket: str) -> bool:
    # Ask for the default bucket, not just "/": the server answers before it has created it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{host}/storage/v1/b/{bucket}", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, limit: int = 4000) -> str:
    return path.read_text(errors="replace")[-limit:] if path.exists() else "(no output)"


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """Start an in-memory emulator for the session and point google-cloud-storage at it."""
    from s2ac.io import storage

    executable = Path(sys.executable).with_name("gcp-storage-emulator")
    if not executable.exists():
        pytest.fail(f"{executable} not found: run `uv sync` (gcp-storage-emulator is a dev dep)")
    port = _free_port()
    host = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    command = [
        str(executable), "start", "--host", "127.0.0.1", "--port", str(port),
        "--default-bucket", GCS_TEST_BUCKET, "--in-memory",
    ]  # fmt: skip
    # Output goes to a file, not a pipe: the emulator logs every request and would block once
    # an unread pipe buffer filled up.
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _EMULATOR_START_TIMEOUT_S
        while not _emulator_answers(host, GCS_TEST_BUCKET):
            if process.poll() is not None or time.monotonic() > deadline:
                state = (
                    f"exited with code {process.returncode}"
                    if process.poll() is not None
                    else f"did not answer within {_EMULATOR_START_TIMEOUT_S:g} s"
                )
                pytest.fail(
                    f"GCS emulator ({' '.join(command)}) {state}; its output:\n{_tail(log_path)}"
                )
            time.sleep(0.1)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("STORAGE_EMULATOR_HOST", host)
            env.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
            env.setenv("NO_PROXY", "127.0.0.1,localhost")
            env.setenv("no_proxy", "127.0.0.1,localhost")
            storage.reset_client_cache()
            yield GcsEmulator(host=host, bucket=GCS_TEST_BUCKET)
        storage.reset_client_cache()
    finally:
        _stop(process)


@pytest.fixture
def gcs_prefix(gcs_emulator: GcsEmulator) -> str:
    """A fresh ``gs://s2ac-test/<unique>/`` folder per test, so tests never see each other."""
    return gcs_emulator.uri(f"t-{uuid.uuid4().hex[:12]}/")


# ==============================================================================================
# MLflow tracking server (SQLite backend, local artifact root) for tests marked `service`
# ==============================================================================================

_MLFLOW_START_TIMEOUT_S = 90.0


def _http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 for the session; yields its tracking URI."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_path = root / "server.log"
    with log_path.open("wb") as log_file:
        # MLflow 3's server starts job-runner processes that load all of MLflow and compete
        # with the tests for the 2 cores; nothing here uses server-side jobs.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=root,
                                   env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + _MLFLOW_START_TIMEOUT_S
        while not _http_ok(f"{uri}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start; its output:\n{_tail(log_path)}")
            time.sleep(0.5)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("NO_PROXY", "127.0.0.1,localhost")
            env.setenv("no_proxy", "127.0.0.1,localhost")
            yield uri
    finally:
        _stop(process)


@pytest.fixture(autouse=True)
def _no_mlflow_experiment_from_earlier_tests() -> Iterator[None]:
    """``mlflow.set_experiment`` exports ``MLFLOW_EXPERIMENT_ID`` into this process's
    environment; a later test's subprocess (``mlflow run``, kfp.local tasks) would inherit an
    experiment of another database. Clear it around every test."""
    for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(key, None)
    yield
    for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(key, None)


# ==============================================================================================
# The tiny embedded dataset the training, tuning and comparison tests train on
# ==============================================================================================


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 patches of the small profile (5 train, 1 val, 2 test, 2 ood), synthesized once per
    session: the tests that use it only read it (those that alter records copy it first)."""
    from s2ac.config import load_config
    from s2ac.data.synthetic import synthesize

    out = tmp_path_factory.mktemp("tiny") / "data"
    config = load_config("small", overrides=["data.n_patches=8", "data.split_buffer_px=32"])
    synthesize(out, config.data)
    return out


# ==============================================================================================
# Scenes with a known dark object, for the dark-object retrieval (NumPy and TensorFlow)
# ==============================================================================================


class DarkObjectScenes:
    """Bright land with 2 % of its pixels a dark object, and atmospheres to put over it."""

    size = 64

    def scene(self, rng: Any, dark: float = 0.01) -> Any:
        """Surface ``(size, size, 4)``: the dark object has reflectance ``dark`` (visible)."""
        surface = rng.uniform(0.05, 0.4, (self.size, self.size, 4))
        surface.reshape(-1, 4)[: self.size**2 // 50, :3] = dark
        return surface

    @staticmethod
    def atmosphere(aot: float, model: str = "continental", **changes: Any) -> Any:
        from s2ac.physics.lut import Atmosphere

        values = {"aot550": aot, "aerosol_model": model, "water_vapour": 2.75, "ozone": 0.3,
                  "solar_zenith": 40.0, "view_zenith": 6.0, "relative_azimuth": 100.0,
                  "elevation_km": 0.2} | changes  # fmt: skip
        return Atmosphere(**values)


@pytest.fixture(scope="session")
def dark_scenes() -> DarkObjectScenes:
    return DarkObjectScenes()
