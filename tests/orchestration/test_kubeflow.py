"""KFP: the compiled specs are the checked-in ones and say what they must (GPU, resources,
retries, caching, the gate condition, no credentials); the training pipeline runs end to end with
kfp.local; submit speaks the KFP REST API (checked against a recording stand-in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from fakes.kfp_api import FakeKfpApi, start
from s2ac.config import PipelineConfig
from s2ac.orchestration.kubeflow import COMPILED_DIR, NAMES, compile_pipelines

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    return {path.stem: path for path in compile_pipelines(PipelineConfig(), out)}


def _spec(path: Path) -> dict:
    return next(iter(yaml.safe_load_all(path.read_text())))


def _platform(path: Path) -> dict:
    documents = list(yaml.safe_load_all(path.read_text()))
    return documents[1] if len(documents) > 1 else {}


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the root DAG and of every sub-DAG, by name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks |= component.get("dag", {}).get("tasks", {})
    return tasks


@pytest.mark.parametrize("name", NAMES)
def test_compiled_specs_are_the_checked_in_ones(compiled, name):
    checked_in = COMPILED_DIR / f"{name}.yaml"
    assert checked_in.read_text() == compiled[name].read_text(), (
        f"{checked_in} is stale: run `s2ac pipeline compile` and commit the result"
    )


def test_training_spec_resources_retries_caching_and_gate(compiled):
    spec = _spec(compiled["training"])
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]
    assert train["image"] == PipelineConfig().image
    assert train["resources"]["accelerator"] == {
        "count": "1", "resourceCount": "1", "resourceType": "nvidia.com/gpu",
        "type": "nvidia.com/gpu",
    }  # fmt: skip
    assert train["resources"]["resourceCpuLimit"] == "8"
    assert train["resources"]["resourceMemoryLimit"] == "32G"
    tasks = _tasks(spec)
    for name in ("export", "validate", "gate", "promote"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3, name
    assert "retryPolicy" not in tasks["train"]
    for name in ("synth", "validate", "train", "evaluate"):
        assert tasks[name]["cachingOptions"].get("enableCache") is True, name
    for name in ("gate", "promote", "record-status"):
        assert not tasks[name]["cachingOptions"].get("enableCache"), name
    conditions = [t.get("triggerPolicy", {}).get("condition", "") for t in tasks.values()]
    assert any("gate-Output" in c and "== true" in c for c in conditions), conditions
    assert any("'earthengine'" in c for c in conditions), conditions
    exit_task = tasks["record-status"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    # The dataset digest feeds the later tasks, so their cache keys change with the data.
    assert "dataset_digest" in spec["components"]["comp-train"]["inputDefinitions"]["parameters"]


def test_tuning_spec_fans_out_workers_on_one_study(compiled):
    spec = _spec(compiled["tuning"])
    tasks = _tasks(spec)
    loop = next(t for t in spec["root"]["dag"]["tasks"].values() if "iteratorPolicy" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == PipelineConfig().n_tune_workers
    assert tasks["best-params"]["dependentTasks"] == [
        next(n for n, t in spec["root"]["dag"]["tasks"].items() if "iteratorPolicy" in t)
    ]
    secrets = json.dumps(_platform(compiled["tuning"]))
    assert "s2ac-optuna" in secrets and "PGPASSWORD" in secrets  # a reference, not a value
    downstream = spec["root"]["dag"]["tasks"]["validate-train-gate"]["inputs"]["parameters"]
    assert downstream["lambda_l1"]["taskOutputParameter"] == {
        "outputParameterKey": "lambda_l1", "producerTask": "best-params",
    }  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_compiled_specs_hold_no_credentials_or_local_paths(compiled, name):
    text = compiled[name].read_text()
    for forbidden in ("/work/", "/tmp/", "/home/", "sqlite:", "127.0.0.1", "BEGIN PRIVATE KEY",
                      "Bearer", "token", "password=", ":5432/optuna@"):  # fmt: skip
        assert forbidden not in text, forbidden
    assert "postgresql+psycopg://optuna@postgres" in text or name == "training"


def test_submit_uploads_and_starts_a_run(tmp_path):
    api = FakeKfpApi()
    server, url = start(api)
    token = "test-token-4f1c9e"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "s2ac", "pipeline", "submit", "--host", url, "--experiment",
             "s2ac-test", "-P", "epochs=3", "-P", "source=synth"],
            capture_output=True, text=True, timeout=300,
            env=os.environ | {"KFP_TOKEN": token, "NO_PROXY": "127.0.0.1"},
        )  # fmt: skip
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    assert token not in result.stdout + result.stderr
    calls = [(r.method, r.path.split("?")[0]) for r in api.requests]
    assert ("POST", "/apis/v2beta1/pipelines/upload") in calls
    assert calls[-1] == ("POST", "/apis/v2beta1/runs")
    for request in api.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers.get("authorization") == f"Bearer {token}", request.path
    upload = next(r for r in api.requests if r.path.startswith("/apis/v2beta1/pipelines/upload"))
    assert b"pipelineInfo:" in upload.body and b"name: s2ac-training" in upload.body
    experiment = json.loads(
        next(
            r.body
            for r in api.requests
            if r.method == "POST" and r.path == "/apis/v2beta1/experiments"
        )
    )
    assert experiment["display_name"] == "s2ac-test"
    run = json.loads(api.requests[-1].body)
    assert run["runtime_config"]["parameters"] == {"epochs": 3, "source": "synth"}
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "s2ac-training"
    assert run["experiment_id"].startswith("exp-")
    assert "started run run-" in result.stdout


@pytest.mark.slow
def test_run_local_trains_gates_and_promotes(tmp_path):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    command = [
        sys.executable, "-m", "s2ac", "pipeline", "run-local", "--workdir", str(tmp_path / "wd"),
        "--profile", "small", "-o", "data.n_patches=16", "-o", "train.epochs=1",
        "-o", "pipeline.io_retries=0", "-o", f"registry.tracking_uri={tracking}",
        "-o", "gate.criteria.ssim_floor.bound=0.5", "-o", "gate.criteria.psnr_floor.bound=20",
        "-o", "gate.criteria.rmse_vs_baselines_test=null",
        "-o", "gate.criteria.rmse_vs_baselines_ood=null",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for task in ("synth", "validate", "train", "evaluate", "gate", "promote", "record-status"):
        assert f"Task \x1b[96m'{task}" in output or f"'{task}" in output, task
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient(tracking)
    champion = client.get_model_version_by_alias("s2ac-pix2pix", "champion")
    assert champion.tags["gate"] == "passed"
    status = client.get_experiment_by_name("s2ac-pipelines")
    [run] = client.search_runs([status.experiment_id])
    assert run.data.tags["state"] == "SUCCEEDED"
    assert list((tmp_path / "wd" / "pipeline-root").rglob("report.md"))


def test_run_local_failure_is_recorded_by_the_exit_handler(tmp_path):
    """Earth Engine unreachable (no credentials): the export fails, the exit handler still runs
    and records the failure in MLflow, and the command ends with one error line."""
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    result = subprocess.run(
        [sys.executable, "-m", "s2ac", "pipeline", "run-local", "--workdir", str(tmp_path / "wd"),
         "-o", "pipeline.io_retries=0", "-o", f"registry.tracking_uri={tracking}",
         "-P", "source=earthengine", "-P", "bucket=nowhere"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env=env | {"EE_API_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert "error: Pipeline 's2ac-training' finished with status FAILURE" in output
    assert "s2ac/cli.py" not in output  # the tasks log tracebacks, the command does not
    client = MlflowClient(tracking)
    [run] = client.search_runs([client.get_experiment_by_name("s2ac-pipelines").experiment_id])
    assert run.data.tags["state"] == "FAILED"
    assert client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    assert client.get_experiment_by_name("s2ac") is None  # nothing trained or registered
