"""Registry and gate against a real ``mlflow server`` (SQLite backend, local artifact root).

The candidate models are per-band linear corrections (a 1x1 convolution) fitted on the train split
and scaled by a ``strength``: 0 is the identity baseline, 1 the least-squares fit. Their quality is
ordered by strength, so "worse" and "better" are known without training a GAN.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from s2ac.bands import BAND_NAMES
from s2ac.config import Config, GateConfig, load_config
from s2ac.data.synthetic import synthesize
from s2ac.evaluate import evaluate, score_methods
from s2ac.pyfunc import log_generator
from s2ac.registry import (
    GATE_TAG,
    RegistryError,
    alias_version,
    decide,
    logged_generator,
    promote,
    register,
)
from s2ac.tracking import start_run

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("registry") / "data"
    config = load_config("small", overrides=["data.n_patches=16", "data.patch_size=64",
                                             "data.split_buffer_px=32", "data.seed=3"])  # fmt: skip
    synthesize(out, config.data)
    return out


@pytest.fixture(scope="module")
def linear_fit(dataset: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-band least squares SR = a * TOA + b on the train split."""
    from s2ac.evaluate import _batches

    toa, sr = [], []
    for batch_toa, batch_sr, _ in _batches(dataset, "train", 8):
        toa.append(batch_toa.reshape(-1, 4))
        sr.append(batch_sr.reshape(-1, 4))
    x, y = np.concatenate(toa), np.concatenate(sr)
    fits = [np.polyfit(x[:, band], y[:, band], 1) for band in range(4)]
    return np.array([f[0] for f in fits]), np.array([f[1] for f in fits])


def _config(server: str, model_name: str, *overrides: str) -> Config:
    return load_config(
        "small",
        overrides=[
            f"registry.tracking_uri={server}",
            f"registry.model_name={model_name}",
            "registry.experiment=registry-tests",
            "evaluate.baselines=[identity]",
            "gate.min_mean_ssim=0.5",
            "gate.min_mean_psnr=20",
            "gate.max_rmse_ratio_to_identity=0.9",
            *overrides,
        ],
    )


def _candidate(
    dataset: Path, fit: tuple[np.ndarray, np.ndarray], strength: float, config: Config, out: Path
) -> tuple[str, Path]:
    """Log a linear-correction generator in a training-like run and evaluate it; (run id, dir)."""
    slope, intercept = fit
    inputs = keras.Input((None, None, 4))
    layer = keras.layers.Conv2D(4, 1, name="linear")
    model = keras.Model(inputs, layer(inputs))
    kernel = np.diag(1.0 + strength * (slope - 1.0)).reshape(1, 1, 4, 4).astype("float32")
    layer.set_weights([kernel, (strength * intercept).astype("float32")])
    out.mkdir(parents=True)
    model.save(out / "generator.keras")
    example = np.zeros((1, 64, 64, 4), dtype="float32") + 0.1
    with start_run(config.registry, run_name=f"strength-{strength}") as run:
        log_generator(out / "generator.keras", example, model.predict(example, verbose=0))
    evaluation = out / "evaluation"
    evaluate(dataset, out / "generator.keras", config.evaluate, evaluation)
    return run.info.run_id, evaluation


def test_decide_checks_every_threshold():
    model = pd.Series({"ssim": 0.95, "psnr": 35.0} | {f"rmse_{b}": 0.01 for b in BAND_NAMES})
    identity = pd.Series({f"rmse_{b}": 0.02 for b in BAND_NAMES} | {"rmse_B8": 0.011})
    gate = GateConfig(min_mean_ssim=0.9, min_mean_psnr=30, max_rmse_ratio_to_identity=0.7)
    decision = decide(model, identity, gate)
    failed = [c.name for c in decision.criteria if not c.passed]
    assert failed == ["RMSE B8 / identity"]  # 0.01 / 0.011 = 0.91 > 0.7
    assert not decision.passed
    champion = pd.Series({"ssim": 0.951, "psnr": 34.0})
    relaxed = gate.model_copy(update={"max_rmse_ratio_to_identity": 0.95})
    assert not decide(model, identity, relaxed, champion, "3").passed  # SSIM 0.95 < 0.951
    tolerant = relaxed.model_copy(update={"champion_ssim_tolerance": 0.002})
    decision = decide(model, identity, tolerant, champion, "3")
    assert decision.passed
    assert "| mean SSIM vs champion v3 | 0.9500 | >= 0.9490 | yes |" in decision.markdown()


def test_champion_moves_only_to_a_better_model(mlflow_server, dataset, linear_fit, tmp_path):
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    client = MlflowClient(mlflow_server)

    run, evaluation = _candidate(dataset, linear_fit, 0.6, config, tmp_path / "first")
    first = register(run, evaluation, dataset, config)
    assert first.promoted and first.version == "1" and first.champion_version == "1"
    version = client.get_model_version(name, "1")
    assert version.tags[GATE_TAG] == "passed"
    assert (
        version.tags["dataset_digest"]
        == json.loads((dataset / "manifest.json").read_text())["digest"]
    )
    assert float(version.tags["test_ssim"]) > 0.5
    assert "identity" in version.description
    gate_file = client.download_artifacts(run, "gate/v1.json", str(tmp_path))
    assert json.loads(Path(gate_file).read_text())["passed"] is True
    model_id = logged_generator(client, run).model_id
    assert version.source == f"models:/{model_id}"
    artifacts = {a.path for a in client.list_logged_model_artifacts(model_id, "evaluation")}
    assert "evaluation/report.md" in artifacts and "evaluation/samples.png" in artifacts

    run, evaluation = _candidate(dataset, linear_fit, 0.3, config, tmp_path / "worse")
    worse = register(run, evaluation, dataset, config)
    assert not worse.promoted and worse.champion_version == "1"
    failed = [c.name for c in worse.decision.criteria if not c.passed]
    assert failed and all("champion v1" in name for name in failed)
    assert alias_version(client, name, "challenger").version == "2"
    assert client.get_model_version(name, "2").tags[GATE_TAG] == "failed"

    run, evaluation = _candidate(dataset, linear_fit, 1.0, config, tmp_path / "better")
    better = register(run, evaluation, dataset, config)
    assert better.promoted and better.champion_version == "3"
    assert alias_version(client, name, "champion").version == "3"
    # The champion is scored by the gate itself on the same test set: check that number.
    champion_ssim = next(c for c in better.decision.criteria if "SSIM vs champion" in c.name)
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    again = score_methods(dataset, {"v1": lambda t: np.asarray(model.predict(t))}, "test",
                          config.evaluate)["v1"]["ssim"].mean()  # fmt: skip
    assert champion_ssim.threshold == pytest.approx(again, abs=1e-6)


def test_thresholds_are_respected(mlflow_server, dataset, linear_fit, tmp_path):
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name, "gate.min_mean_psnr=99")
    run, evaluation = _candidate(dataset, linear_fit, 1.0, config, tmp_path / "m")
    result = register(run, evaluation, dataset, config)
    assert not result.promoted and result.champion_version is None
    psnr = next(c for c in result.decision.criteria if c.name == "mean PSNR (dB)")
    assert not psnr.passed and psnr.threshold == 99
    client = MlflowClient(mlflow_server)
    assert alias_version(client, name, "champion") is None
    assert alias_version(client, name, "challenger").version == "1"


def test_crash_during_gate_leaves_registry_consistent(
    mlflow_server, dataset, linear_fit, tmp_path, monkeypatch
):
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    run, evaluation = _candidate(dataset, linear_fit, 0.6, config, tmp_path / "a")
    register(run, evaluation, dataset, config)
    run, evaluation = _candidate(dataset, linear_fit, 1.0, config, tmp_path / "b")

    def crash(*args, **kwargs):
        raise RuntimeError("killed while scoring the champion")

    monkeypatch.setattr("s2ac.registry.score_version", crash)
    with pytest.raises(RuntimeError, match="killed"):
        register(run, evaluation, dataset, config)
    client = MlflowClient(mlflow_server)
    assert alias_version(client, name, "champion").version == "1"
    assert client.get_model_version(name, "2").tags[GATE_TAG] == "pending"
    assert client.search_registered_models(f"name = '{name}.promotion-lock'") == []


def test_concurrent_registrations_keep_aliases_consistent(
    mlflow_server, dataset, linear_fit, tmp_path
):
    """Two `s2ac register` processes at once: the better model must end up champion whichever
    takes the lock first (without the lock both would pass against "no champion")."""
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    candidates = {
        strength: _candidate(dataset, linear_fit, strength, config, tmp_path / str(strength))
        for strength in (0.4, 1.0)
    }
    overrides = [
        f"registry.tracking_uri={mlflow_server}", f"registry.model_name={name}",
        "registry.experiment=registry-tests", "evaluate.baselines=[identity]",
        "gate.min_mean_ssim=0.5", "gate.min_mean_psnr=20", "gate.max_rmse_ratio_to_identity=0.9",
    ]  # fmt: skip
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "s2ac", "register", str(dataset), "--run-id", run,
             "--evaluation", str(evaluation), "--profile", "small",
             *[arg for o in overrides for arg in ("-o", o)]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=os.environ | {"NO_PROXY": "127.0.0.1"},
        )
        for run, evaluation in candidates.values()
    ]  # fmt: skip
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    client = MlflowClient(mlflow_server)
    versions = {v.run_id: v for v in client.search_model_versions(f"name = '{name}'")}
    assert len(versions) == 2
    best = versions[candidates[1.0][0]]
    assert alias_version(client, name, "champion").version == best.version
    assert best.tags[GATE_TAG] == "passed"
    assert all(v.tags[GATE_TAG] in ("passed", "failed") for v in versions.values())
    assert alias_version(client, name, "challenger").version in {
        v.version for v in versions.values()
    }
    assert client.search_registered_models(f"name = '{name}.promotion-lock'") == []


def test_promote_separately_refuses_a_stale_gate(mlflow_server, dataset, linear_fit, tmp_path):
    """The KFP pipeline gates in one task and promotes in the next (dsl.If): promotion must not
    apply a decision made against a champion that has changed since."""
    name = f"s2ac-{uuid.uuid4().hex[:8]}"
    config = _config(mlflow_server, name)
    client = MlflowClient(mlflow_server)
    run_a, eval_a = _candidate(dataset, linear_fit, 0.5, config, tmp_path / "a")
    gated = register(run_a, eval_a, dataset, config, promote=False)
    assert gated.decision.passed and not gated.promoted
    assert alias_version(client, name, "champion") is None
    run_b, eval_b = _candidate(dataset, linear_fit, 1.0, config, tmp_path / "b")
    assert register(run_b, eval_b, dataset, config).champion_version == "2"
    assert promote("1", config) is False  # gated against "no champion", now v2 is champion
    assert alias_version(client, name, "champion").version == "2"
    run_c, eval_c = _candidate(dataset, linear_fit, 0.95, config, tmp_path / "c")
    with pytest.raises(RegistryError, match="gate is 'failed'"):
        register(run_c, eval_c, dataset, config, promote=False)
        promote("3", config)
