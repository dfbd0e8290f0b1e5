"""The registered pyfunc serves anywhere: its own code, published requirements, any H x W."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.models import convert_input_example_to_serving_input, validate_serving_input

import s2ac
from s2ac.correction.model import LoadedGenerator
from s2ac.correction.tiles import blend_array
from s2ac.model.generator import build_generator
from s2ac.model.physics_generator import build_physics_generator
from s2ac.registry.pyfunc import DEFAULT_OVERLAP, log_generator

pytestmark = [pytest.mark.slow, pytest.mark.service]
NAME = "s2ac-serving-test"


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.02, 0.3, size=(1, height, width, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def champion(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """A small U-Net (64 px tiles) logged, registered and aliased champion on the test server."""
    folder = tmp_path_factory.mktemp("serving")
    network = build_generator(64, 8, depth=6, seed=2)
    network.save(folder / "generator.keras")
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("serving")
    with mlflow.start_run():
        info = log_generator(folder / "generator.keras", scene(64, 64))
    version = mlflow.register_model(info.model_uri, NAME)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", version.version)
    return f"models:/{NAME}@champion", network


def expected(network: object, toa: np.ndarray) -> np.ndarray:
    predict = LoadedGenerator(network, "test").predictor(None, 8)
    return blend_array(toa[0], predict, tile=64, overlap=min(DEFAULT_OVERLAP, 32))[None]


def test_the_logged_model_carries_its_code_and_names_only_published_packages(champion):
    uri, _ = champion
    local = Path(mlflow.artifacts.download_artifacts(uri))
    requirements = (local / "requirements.txt").read_text().split()
    names = {line.split("==")[0] for line in requirements}
    assert "s2ac" not in names and {"keras", "numpy", "mlflow"} <= names
    assert names & {"tensorflow", "tensorflow-cpu"}
    assert (local / "code" / "s2ac" / "correction" / "tiles.py").is_file()
    assert (local / "code" / "s2ac" / "physics" / "data").is_dir()  # the look-up table travels
    schema = mlflow.models.get_model_info(uri).signature.inputs.to_dict()
    assert tuple(schema[0]["tensor-spec"]["shape"]) == (-1, -1, -1, 4)


def test_validate_serving_input_accepts_any_size_and_float64_json(champion):
    """A JSON request is parsed into the declared float32, whatever precision it was written in."""
    uri, network = champion
    toa = scene(80, 100, seed=1)
    payload = convert_input_example_to_serving_input(toa.astype(np.float64))
    result = np.asarray(validate_serving_input(uri, payload))
    assert result.shape == (1, 80, 100, 4)
    np.testing.assert_allclose(result, expected(network, toa), atol=1e-5)


def test_the_physics_generator_signature_asks_for_geometry(mlflow_server, tmp_path):
    build_physics_generator(32, 8, seed=0).save(tmp_path / "physics.keras")
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("serving")
    example = {"toa": scene(32, 32), "geometry": np.array([[35.0, 5.0, 90.0, 0.5, 0.285, 0.0]])}
    with mlflow.start_run():
        info = log_generator(tmp_path / "physics.keras", example)
    names = mlflow.models.get_model_info(info.model_uri).signature.inputs.input_names()
    assert names == ["toa", "geometry"]
    bigger = {"toa": scene(48, 40).astype(np.float64), "geometry": example["geometry"]}
    result = validate_serving_input(info.model_uri, convert_input_example_to_serving_input(bigger))
    assert np.asarray(result).shape == (1, 48, 40, 4) and np.isfinite(result).all()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_models_serve_answers_without_the_project_installed(
    champion, mlflow_server, tmp_path
):
    uri, network = champion
    # Hide this checkout from the server: the model must bring s2ac itself (code_paths).
    hide = tmp_path / "hide"
    hide.mkdir()
    source = str(Path(s2ac.__file__).parent.parent)
    (hide / "sitecustomize.py").write_text(
        f"import sys\nsys.path[:] = [p for p in sys.path if p.rstrip('/') != {source!r}]\n"
    )
    port = _free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # uvicorn
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "PYTHONPATH": str(hide),
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "PATH": path}  # fmt: skip
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", uri,
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow models serve did not start:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        toa = scene(70, 90, seed=4)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": toa.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            predictions = np.asarray(json.loads(answer.read())["predictions"], np.float32)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert predictions.shape == (1, 70, 90, 4)
    np.testing.assert_allclose(predictions, expected(network, toa), atol=1e-5)
