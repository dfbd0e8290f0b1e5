"""Registry against a real ``mlflow server`` (SQLite backend,
local artifact root).

The registry tests use a small dataset whose truth is a known *curved* function of TOA,
``sr = g(toa)``, so the quality of every candidate is known without training a GAN:

* ``exact(strength)``: ``toa + strength * (g(toa) - toa)`` (1.0 is perfect, 0 is identity);
* ``linear``: the linear baseline itself (its 20 coefficients as a 1x1 convolution): the default
  gate must refuse it, since it does not beat the best baseline by a margin.

Its ``ood`` split is brighter than train/val/test, where the linear fit extrapolates badly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from s2ac.config import Config, load_config
from s2ac.data.tfrecord import write_tfrecord
from s2ac.errors import InputDataError
from s2ac.evaluation.evaluate import evaluate, fit_linear, score_methods
from s2ac.registry.pyfunc import log_generator
from s2ac.registry.tracking import start_run
from s2ac.registry.versions import (
    GATE_TAG,
    RegistryError,
    alias_version,
    logged_generator,
    promote,
    register,
)

SIZE = 32
#: g(x) = A x + B + C x^2 per band: curved, so no affine map of TOA reproduces it.
A, B, C = np.array([1.1, 1.05, 1.0, 1.0]), np.array([-0.06, -0.04, -0.03, -0.01]), -0.8
COUNTS = {"train": 12, "val": 2, "test": 6, "ood": 6}


def truth(toa: np.ndarray) -> np.ndarray:
    return (A * toa + B + C * toa**2).astype(np.float32)


def _known_dataset(out: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    samples, hashes = [], {}
    for split, count in COUNTS.items():
        low, high = (0.25, 0.55) if split == "ood" else (0.08, 0.35)
        pairs = []
        for index in range(count):
            base = rng.uniform(low, high, (1, 1, 4))
            toa = np.clip(base + rng.normal(0, 0.03, (SIZE, SIZE, 4)), low, high).astype("f4")
            patch_id = f"{split}-{index:05d}"
            pairs.append((toa, truth(toa), patch_id))
            samples.append({"patch_id": patch_id, "split": split, "source": "known"})
        path = out / split / "part-00000.tfrecord.gz"
        write_tfrecord(path, pairs)
        hashes[f"{split}/part-00000.tfrecord.gz"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {
        "name": "known-curve", "patch_size": SIZE, "samples": samples, "files": hashes,
        "split": {"counts": COUNTS},
        "digest": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _known_dataset(tmp_path_factory.mktemp("registry") / "data")


def _config(server: str, model_name: str, *overrides: str) -> Config:
    """The default gate criteria (the small profile only lowers the SSIM/PSNR floors)."""
    return load_config(
        "small",
        overrides=[
            f"registry.tracking_uri={server}",
            f"registry.model_name={model_name}",
            "registry.experiment=registry-tests",
            "evaluate.figures=false",  # figures are tested in test_evaluate; here only numbers
            *overrides,
        ],
    )


def _network(kind: str | float, dataset: Path) -> keras.Model:
    """``exact(strength)`` for a number, the linear baseline for ``"linear"``."""
    inputs = keras.Input((None, None, 4))
    if kind == "linear":
        fit = fit_linear(dataset)
        layer = keras.layers.Conv2D(4, 1, name="linear")
        model = keras.Model(inputs, layer(inputs))
        layer.set_weights([fit.weights.reshape(1, 1, 4, 4).astype("f4"),
                           fit.intercept.astype("f4")])  # fmt: skip
        return model
    s = float(kind)
    squares = keras.layers.Multiply()([inputs, inputs])
    layer = keras.layers.Conv2D(4, 1, name="curve")
    model = keras.Model(inputs, layer(keras.layers.Concatenate()([inputs, squares])))
    kernel = np.zeros((1, 1, 8, 4), dtype="f4")
    for band in range(4):
        kernel[0, 0, band, band] = 1 + s * (A[band] - 1)
        kernel[0, 0, 4 + band, band] = s * C
    layer.set_weights([kernel, (s * B).astype("f4")])
    return model


@pytest.fixture(scope="module")
def candidates(mlflow_server, dataset, tmp_path_factory) -> Callable[[str | float], tuple]:
    """``candidates(kind)``: a logged and evaluated candidate, made once per module (a run can be
    registered under every test's model name; evaluations do not depend on the name)."""
    made: dict[str | float, tuple[str, Path]] = {}
    config = _config(mlflow_server, "unused")
    root = tmp_path_factory.mktemp("candidates")

    def get(kind: str | float) -> tuple[str, Path]:
        if kind not in made:
            made[kind] = _candidate(dataset, kind, config, root / str(kind))
        return made[kind]

    return get


def _candidate(dataset: Path, kind: str | float, config: Config, out: Path) -> tuple[str, Path]:
    """Log a candidate generator in a training-like run and evaluate it; (run id, eval dir)."""
    model = _network(kind, dataset)
    out.mkdir(parents=True)
    model.save(out / "generator.keras")
    example = np.zeros((1, SIZE, SIZE, 4), dtype="float32") + 0.1
    with start_run(config.registry, run_name=f"candidate-{kind}") as run:
        log_generator(out / "generator.keras", example)
    evaluation = out / "evaluation"
    evaluate(dataset, out / "generator.keras", config.evaluate, evaluation)
    return run.info.run_id, evaluation


# --- the gate as data (pure) --------------------------------------------------------------------


# --- against a real MLflow server -----------------------------------------------------------------


@pytest.mark.service
@pytest.mark.slow
def test_default_gate_refuses_the_linear_map_and_promotes_a_better_model(
    mlflow_server, dataset, candidates, tmp_path
):
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    client = MlflowClient(mlflow_server)

    run, evaluation = candidates("linear")
    refused = register(run, evaluation, dataset, config)
    assert not refused.promoted and refused.champion_version is None
    failed = {c.name for c in refused.decision.failed}
    assert failed and all(n.startswith("rmse_vs_baselines") for n in failed)
    assert client.get_model_version(name, "1").tags[GATE_TAG] == "failed"

    # The same model with the margin removed from the config passes: thresholds are data.
    lenient = _config(mlflow_server, name, "gate.criteria.rmse_vs_baselines_test.factor=1.001",
                      "gate.criteria.rmse_vs_baselines_ood.factor=1.001")  # fmt: skip
    assert register(run, evaluation, dataset, lenient, promote=False).decision.passed

    run, evaluation = candidates(0.99)
    first = register(run, evaluation, dataset, config)
    assert first.promoted and first.version == "2" and first.champion_version == "2"
    version = client.get_model_version(name, "2")
    assert version.tags[GATE_TAG] == "passed"
    digest = json.loads((dataset / "manifest.json").read_text())["digest"]
    assert version.tags["dataset_digest"] == version.tags["gate.dataset_digest"] == digest
    assert float(version.tags["ood_ssim"]) > 0.9 and "ood_linear_rmse" in version.tags
    for method in ("identity", "dos", "6s", "linear", "**ood**"):
        assert method in version.description
    gate_file = client.download_artifacts(run, "gate/v2.json", str(tmp_path))
    recorded = json.loads(Path(gate_file).read_text())
    assert recorded["passed"] is True and recorded["dataset_digest"] == digest
    model_id = logged_generator(client, run).model_id
    assert version.source == f"models:/{model_id}"
    artifacts = {a.path for a in client.list_logged_model_artifacts(model_id, "evaluation")}
    assert {"evaluation/report.md", "evaluation/evaluation.json"} <= artifacts
    assert "evaluation/rmse_by_band.png" not in artifacts  # evaluate.figures=false

    run, evaluation = candidates(0.97)
    worse = register(run, evaluation, dataset, config)
    assert not worse.promoted and worse.champion_version == "2"
    failed = [c for c in worse.decision.failed]
    assert failed and all(c.name.endswith("vs_champion") for c in failed)
    assert alias_version(client, name, "challenger").version == "3"

    run, evaluation = candidates(1.0)
    better = register(run, evaluation, dataset, config)
    assert better.promoted and better.champion_version == "4"
    # The champion is scored by the gate itself on the same test set: check that number.
    champion_ssim = next(c for c in better.decision.criteria if c.name == "ssim_vs_champion")
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"models:/{name}/2")
    again = score_methods(dataset, {"v2": lambda t, ids: np.asarray(model.predict(t))}, "test",
                          config.evaluate)["v2"]["ssim"].mean()  # fmt: skip
    assert champion_ssim.threshold == pytest.approx(again, abs=1e-6)


@pytest.mark.service
@pytest.mark.slow
def test_handed_scores_are_never_trusted(mlflow_server, dataset, candidates, tmp_path):
    """An evaluation forged to look perfect, with the right dataset digest, does not promote:
    the gate scores the logged model itself. An incomplete evaluation folder is refused."""
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    run, shared = candidates("linear")
    evaluation = tmp_path / "forged"
    shutil.copytree(shared, evaluation)
    table = pd.read_csv(evaluation / "comparison.csv", index_col=0)
    for column in ("test/pix2pix", "ood/pix2pix"):
        table.loc[table.index.str.startswith("rmse"), column] = 0.0
    table.to_csv(evaluation / "comparison.csv")
    result = register(run, evaluation, dataset, config)
    assert not result.promoted
    assert {c.name.split("[")[0] for c in result.decision.failed} >= {"rmse_vs_baselines_ood"}
    (evaluation / "comparison.csv").unlink()  # half-written
    with pytest.raises(InputDataError, match="incomplete evaluation folder"):
        register(run, evaluation, dataset, config)


@pytest.mark.service
@pytest.mark.slow
def test_thresholds_are_respected(mlflow_server, dataset, candidates, tmp_path):
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name, "gate.criteria.psnr_floor.bound=101")
    run, evaluation = candidates(1.0)
    result = register(run, evaluation, dataset, config)
    assert not result.promoted and result.champion_version is None
    psnr = next(c for c in result.decision.criteria if c.name == "psnr_floor")
    assert not psnr.passed and psnr.threshold == 101 and psnr.value == 100  # PSNR cap
    client = MlflowClient(mlflow_server)
    assert alias_version(client, name, "champion") is None
    assert alias_version(client, name, "challenger").version == "1"


@pytest.mark.service
@pytest.mark.slow
def test_crash_during_gate_leaves_registry_consistent(
    mlflow_server, dataset, candidates, tmp_path, monkeypatch
):
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    run, evaluation = candidates(0.99)
    assert register(run, evaluation, dataset, config).promoted
    run, evaluation = candidates(1.0)

    def crash(*args, **kwargs):
        raise RuntimeError("killed while scoring the champion")

    monkeypatch.setattr("s2ac.registry.versions.score_version", crash)
    with pytest.raises(RuntimeError, match="killed"):
        register(run, evaluation, dataset, config)
    client = MlflowClient(mlflow_server)
    assert alias_version(client, name, "champion").version == "1"
    assert client.get_model_version(name, "2").tags[GATE_TAG] == "pending"
    assert client.search_registered_models(f"name = '{name}.promotion-lock'") == []


@pytest.mark.service
@pytest.mark.slow
def test_concurrent_registrations_keep_aliases_consistent(
    mlflow_server, dataset, candidates, tmp_path
):
    """Two `s2ac register` processes at once: the better model must end up champion whichever
    takes the lock first (without the lock both would pass against "no champion")."""
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    made = {strength: candidates(strength) for strength in (0.99, 1.0)}
    overrides = [
        f"registry.tracking_uri={mlflow_server}", f"registry.model_name={name}",
        "registry.experiment=registry-tests", "evaluate.figures=false",
    ]  # fmt: skip
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "s2ac", "register", str(dataset), "--run-id", run,
             "--evaluation", str(evaluation), "--profile", "small",
             *[arg for o in overrides for arg in ("-o", o)]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=os.environ | {"NO_PROXY": "127.0.0.1"},
        )
        for run, evaluation in made.values()
    ]  # fmt: skip
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    client = MlflowClient(mlflow_server)
    versions = {v.run_id: v for v in client.search_model_versions(f"name = '{name}'")}
    assert len(versions) == 2
    best = versions[made[1.0][0]]
    assert alias_version(client, name, "champion").version == best.version
    assert best.tags[GATE_TAG] == "passed"
    assert all(v.tags[GATE_TAG] in ("passed", "failed") for v in versions.values())
    assert alias_version(client, name, "challenger").version in {
        v.version for v in versions.values()
    }
    assert client.search_registered_models(f"name = '{name}.promotion-lock'") == []


@pytest.mark.service
@pytest.mark.slow
def test_promote_separately_refuses_a_stale_gate(mlflow_server, dataset, candidates, tmp_path):
    """The KFP pipeline gates in one task and promotes in the next (dsl.If): promotion must not
    apply a decision made against a champion that has changed since."""
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    client = MlflowClient(mlflow_server)
    run_a, eval_a = candidates(0.99)
    gated = register(run_a, eval_a, dataset, config, promote=False)
    assert gated.decision.passed and not gated.promoted
    assert alias_version(client, name, "champion") is None
    run_b, eval_b = candidates(1.0)
    assert register(run_b, eval_b, dataset, config).champion_version == "2"
    assert promote("1", config) is False  # gated against "no champion", now v2 is champion
    assert alias_version(client, name, "champion").version == "2"
    run_c, eval_c = candidates(0.995)
    with pytest.raises(RegistryError, match="gate is 'failed'"):
        register(run_c, eval_c, dataset, config, promote=False)
        promote("3", config)
