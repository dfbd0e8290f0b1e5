"""KFP: the compiled specs are the checked-in ones and say what they must (GPU, resources,
retries, caching, the gate condition, the correction's pinned model and fan-out, no credentials);
the training pipeline runs end to end with kfp.local (the correction pipeline in
test_correction_pipeline.py); submit speaks the KFP REST API (checked against a recording
stand-in)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from fakes.kfp_api import FakeKfpApi, start
from s2ac.config import PipelineConfig
from s2ac.orchestration import stages
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
    for name in ("export", "validate", "register", "promote"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3, name
    assert "retryPolicy" not in tasks["train"]
    for name in ("synth", "validate", "train", "evaluate"):
        assert tasks[name]["cachingOptions"].get("enableCache") is True, name
    for name in ("register", "promote", "record-status"):
        assert not tasks[name]["cachingOptions"].get("enableCache"), name
    conditions = [t.get("triggerPolicy", {}).get("condition", "") for t in tasks.values()]
    assert any("register-Output" in c and "== true" in c for c in conditions), conditions
    assert any("'earthengine'" in c for c in conditions), conditions
    exit_task = tasks["record-status"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    # The dataset digest feeds the later tasks, so their cache keys change with the data.
    train_inputs = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    assert set(train_inputs) == {"profile", "overrides", "dataset_digest"}
    # Configuration travels one way: a profile and overrides, never defaults that beat them.
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"source", "profile", "overrides"}


def _flatten(spec: dict, dag: dict) -> list[str]:
    """Task names of ``dag`` in dependency order, sub-DAGs (conditions, nested pipelines)
    expanded in place."""
    tasks = dag["tasks"]
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            inputs = json.dumps(tasks[name].get("inputs", {}))
            upstream = [d for d in tasks[name].get("dependentTasks", []) if d in tasks]
            upstream += [d for d in tasks if f'"producerTask": "{d}"' in inputs]
            depth[name] = 1 + max((level(d) for d in upstream), default=0)
        return depth[name]

    ordered: list[str] = []
    for name in sorted(tasks, key=level):
        component = spec["components"][tasks[name]["componentRef"]["name"]]
        ordered += _flatten(spec, component["dag"]) if "dag" in component else [name]
    return ordered


def _order(spec: dict) -> list[str]:
    """The training chain's stages in the order the compiled spec runs them."""
    stage_of = {"export": "data", "synth": "data", "validate": "validate", "train": "train",
                "evaluate": "evaluate", "register": "register", "promote": "promote"}  # fmt: skip
    names = [re.sub(r"-\d+$", "", name) for name in _flatten(spec, spec["root"]["dag"])]
    return list(dict.fromkeys(stage_of[n] for n in names if n in stage_of))


def test_training_pipeline_and_local_run_share_the_stage_order(compiled, monkeypatch, tmp_path):
    assert _order(_spec(compiled["training"])) == list(stages.TRAINING_ORDER)
    called: list[str] = []

    class Registration:
        decision = type("D", (), {"passed": True})()

    def record(stage, value=None):
        def call(*args, **kwargs):
            called.append(stage)
            return value

        return call

    result = type("R", (), {"run_id": "r", "checkpoint_dir": tmp_path, "path": "d"})()
    for name, stage, value in [
        ("synth", "data", result), ("validate", "validate", None), ("train", "train", result),
        ("evaluate", "evaluate", None), ("register", "register", Registration()),
        ("promote", "promote", True), ("promoted", None, Registration()),
    ]:  # fmt: skip
        if stage:
            monkeypatch.setattr(stages, name, record(stage, value))
        else:
            monkeypatch.setattr(stages, name, lambda registration, moved: registration)
    from s2ac.config import Config
    from s2ac.orchestration.local import run

    run(Config(), tmp_path)
    assert called == list(stages.TRAINING_ORDER)


def test_tuning_spec_fans_out_workers_on_one_study(compiled):
    spec = _spec(compiled["tuning"])
    tasks = _tasks(spec)
    loop = next(t for t in spec["root"]["dag"]["tasks"].values() if "iteratorPolicy" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == PipelineConfig().n_tune_workers
    assert tasks["best-overrides"]["dependentTasks"] == [
        next(n for n, t in spec["root"]["dag"]["tasks"].items() if "iteratorPolicy" in t)
    ]
    secrets = json.dumps(_platform(compiled["tuning"]))
    assert "s2ac-optuna" in secrets and "PGPASSWORD" in secrets  # a reference, not a value
    downstream = spec["root"]["dag"]["tasks"]["validate-train-gate"]["inputs"]["parameters"]
    # the tuned values reach training as the run's overrides plus the best values
    assert downstream["overrides"]["taskOutputParameter"] == {
        "outputParameterKey": "Output", "producerTask": "best-overrides",
    }  # fmt: skip
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"profile", "overrides"}


def test_correction_spec_pins_the_model_once_then_fans_out_over_the_scenes(compiled):
    from pipelines.correction import SCENES_AT_ONCE  # the checkout is on sys.path once compiled

    spec = _spec(compiled["correction"])
    root = spec["root"]["dag"]["tasks"]
    # pin-model and find-scenes run once; the sub-pipeline gets the pinned URI and the scenes
    assert set(root) == {"pin-model", "find-scenes", "correct-scenes"}
    each = root["correct-scenes"]["inputs"]["parameters"]
    assert each["model_uri"]["taskOutputParameter"] == {
        "outputParameterKey": "model_uri", "producerTask": "pin-model",
    }  # fmt: skip
    assert each["scenes"]["taskOutputParameter"] == {
        "outputParameterKey": "Output", "producerTask": "find-scenes",
    }  # fmt: skip
    inner = spec["components"]["comp-correct-scenes"]["dag"]["tasks"]
    [loop] = inner.values()
    assert loop["iteratorPolicy"]["parallelismLimit"] == SCENES_AT_ONCE
    items = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][items] == {"componentInputParameter": "scenes"}
    # only correct-scene fans out, and every iteration gets the one pinned URI
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(body) == {"correct-scene"}
    channel = body["correct-scene"]["inputs"]["parameters"]["model_uri"]["componentInputParameter"]
    assert loop["inputs"]["parameters"][channel] == {"componentInputParameter": "model_uri"}
    tasks = _tasks(spec)
    for name in ("pin-model", "find-scenes", "correct-scene"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3, name
        assert not tasks[name]["cachingOptions"].get("enableCache"), name
    resources = spec["deploymentSpec"]["executors"]["exec-correct-scene"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"source", "out_prefix", "model", "profile", "overrides"}
    assert {n for n, p in parameters.items() if not p.get("isOptional")} == {"source", "out_prefix"}


# Tasks that log to MLflow or use its registry (the server requires a login), and the tasks that
# open the Optuna study (the only pipeline pods Postgres' NetworkPolicy admits).
MLFLOW_TASKS = {
    "training": {"train", "evaluate", "register", "promote", "record-status"},
    "tuning": {"open-study", "tune-worker", "best-overrides", "train", "evaluate", "register",
               "promote"},
    "correction": {"pin-model", "correct-scene"},
}  # fmt: skip
DATABASE_TASKS = {
    "training": set(), "tuning": {"open-study", "tune-worker", "best-overrides"},
    "correction": set(),
}  # fmt: skip
MLFLOW_LOGIN = ("s2ac-mlflow", {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"})
OPTUNA_PASSWORD = ("s2ac-optuna", {"PGPASSWORD"})


@pytest.mark.parametrize("name", NAMES)
def test_mlflow_login_and_database_label_reach_exactly_their_tasks(compiled, name):
    """Every executor (train and train-2 of the two branches alike) of a task that talks to
    MLflow gets the login from the secret, the tasks that open the study get the database
    password and the pod label; nothing else gets either."""
    executors = _spec(compiled[name])["deploymentSpec"]["executors"]
    platform = _platform(compiled[name])["platforms"]["kubernetes"]["deploymentSpec"]
    assert MLFLOW_TASKS[name] | DATABASE_TASKS[name] <= {
        re.sub(r"-\d+$", "", e.removeprefix("exec-")) for e in executors
    }
    for executor in executors:
        task = re.sub(r"-\d+$", "", executor.removeprefix("exec-"))
        config = platform["executors"].get(executor, {})
        secrets = [
            (s["secretName"], {k["envVar"] for k in s["keyToEnv"] if k["envVar"] == k["secretKey"]})
            for s in config.get("secretAsEnv", [])
        ]
        expected = [OPTUNA_PASSWORD] if task in DATABASE_TASKS[name] else []
        expected += [MLFLOW_LOGIN] if task in MLFLOW_TASKS[name] else []
        assert secrets == expected, executor
        labels = config.get("podMetadata", {}).get("labels", {})
        database = {"s2ac.io/database-client": "true"} if task in DATABASE_TASKS[name] else {}
        assert labels == database, executor


def test_postgres_network_policy_admits_the_labelled_pipeline_pods():
    policy = yaml.safe_load((ROOT / "infra/k8s/base/networkpolicy-postgres.yaml").read_text())
    [rule] = policy["spec"]["ingress"]
    peers = [p for p in rule["from"] if "namespaceSelector" in p]
    assert peers == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
        "podSelector": {"matchLabels": {"s2ac.io/database-client": "true"}},
    }]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_compiled_specs_hold_no_credentials_or_local_paths(compiled, name):
    text = compiled[name].read_text()
    for forbidden in ("/work/", "/tmp/", "/home/", "sqlite:", "127.0.0.1", "BEGIN PRIVATE KEY",
                      "Bearer", "token", "password=", ":5432/optuna@"):  # fmt: skip
        assert forbidden not in text, forbidden


def _submit(url: str, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "s2ac", "pipeline", "submit", "--host", url, "--experiment",
         "s2ac-test", "--profile", "small", *args],
        capture_output=True, text=True, timeout=300,
        env=os.environ | {"KFP_TOKEN": token, "NO_PROXY": "127.0.0.1"},
    )  # fmt: skip


def test_submit_sends_the_checked_in_spec_once_then_new_versions(tmp_path):
    api = FakeKfpApi()
    server, url = start(api)
    token = "test-token-4f1c9e"
    try:
        first = _submit(url, token, "-o", "train.epochs=4", "-P", "source=synth")
        second = _submit(url, token)
        tuning = _submit(url, token, "--pipeline", "tuning")
        submitted = list(api.requests)
        # the stand-in refuses a duplicate pipeline name, as KFP does
        import kfp

        client = kfp.Client(host=url)
        with pytest.raises(Exception, match=r"409|already exists"):
            client.upload_pipeline(str(COMPILED_DIR / "training.yaml"), "s2ac-training")
    finally:
        server.shutdown()
    for result in (first, second, tuning):
        assert result.returncode == 0, result.stderr[-3000:]
        assert token not in result.stdout + result.stderr
        assert "started run run-" in result.stdout
    assert sorted(p["display_name"] for p in api.pipelines.values()) == [
        "s2ac-training", "s2ac-tuning",
    ]  # fmt: skip
    training = next(p for p in api.pipelines.values() if p["display_name"] == "s2ac-training")
    versions = [v for v in api.versions.values() if v["pipeline_id"] == training["pipeline_id"]]
    assert len(versions) == 2  # created once, then a new version
    uploads = [r for r in api.requests if r.path.startswith("/apis/v2beta1/pipelines/upload")]
    checked_in = (COMPILED_DIR / "training.yaml").read_bytes()
    assert checked_in in uploads[0].body and checked_in in uploads[1].body
    assert uploads[1].path.startswith("/apis/v2beta1/pipelines/upload_version")
    for request in submitted:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers.get("authorization") == f"Bearer {token}", request.path
    assert len(api.experiments) == 1
    [experiment] = api.experiments.values()
    assert experiment["display_name"] == "s2ac-test"
    run_one, run_two, run_tuning = api.runs
    assert run_one["runtime_config"]["parameters"] == {
        "profile": "small", "overrides": ["train.epochs=4"], "source": "synth",
    }  # fmt: skip
    assert run_two["runtime_config"]["parameters"] == {"profile": "small", "overrides": []}
    assert (
        run_two["pipeline_version_reference"]["pipeline_version_id"]
        == versions[1]["pipeline_version_id"]
    )
    assert run_tuning["experiment_id"] == experiment["experiment_id"]


def test_submit_the_correction_pipeline_with_its_scenes_and_output_prefix(tmp_path):
    api = FakeKfpApi()
    server, url = start(api)
    try:
        missing = _submit(url, "t", "--pipeline", "correction", "-P", "source=gs://b/scenes/")
        refused = list(api.requests)
        result = _submit(url, "t", "--pipeline", "correction", "-o", "predict.overlap=32",
                         "-P", "source=gs://b/scenes/", "-P", "out_prefix=gs://b/sr")  # fmt: skip
    finally:
        server.shutdown()
    assert missing.returncode == 2 and not refused  # checked before any request
    assert "missing pipeline parameter 'out_prefix'" in " ".join(missing.stderr.split())
    assert result.returncode == 0, result.stderr[-3000:]
    [pipeline] = api.pipelines.values()
    assert pipeline["display_name"] == "s2ac-correction"
    [upload] = [r for r in api.requests if r.path.startswith("/apis/v2beta1/pipelines/upload")]
    assert (COMPILED_DIR / "correction.yaml").read_bytes() in upload.body
    [run] = api.runs
    assert run["display_name"].startswith("s2ac-correction-")
    assert run["runtime_config"]["parameters"] == {
        "profile": "small", "overrides": ["predict.overlap=32"],
        "source": "gs://b/scenes/", "out_prefix": "gs://b/sr",
    }  # fmt: skip


def test_submit_refuses_unknown_parameters_before_any_request(tmp_path):
    api = FakeKfpApi()
    server, url = start(api)
    try:
        result = _submit(url, "t", "-P", "epochs=3")
    finally:
        server.shutdown()
    assert result.returncode == 2
    assert "unknown pipeline parameter 'epochs'" in " ".join(result.stderr.split())
    assert not api.requests


@pytest.mark.slow
def test_run_local_trains_gates_and_promotes(tmp_path):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    command = [
        sys.executable, "-m", "s2ac", "pipeline", "run-local", "--workdir", str(tmp_path / "wd"),
        "--profile", "small", "-o", "data.n_patches=8", "-o", "train.epochs=1",
        "-o", "pipeline.io_retries=0", "-o", f"registry.tracking_uri={tracking}",
        "-o", "evaluate.baselines=[identity]", "-o", "gate.criteria.ssim_floor.bound=0.5",
        "-o", "gate.criteria.rmse_vs_baselines_test=null",
        "-o", "gate.criteria.rmse_vs_baselines_ood=null",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for task in ("synth", "validate", "train", "evaluate", "register", "promote", "record-status"):
        assert f"Task \x1b[96m'{task}" in output or f"'{task}" in output, task
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient(tracking)
    champion = client.get_model_version_by_alias("s2ac-pix2pix", "champion")
    assert champion.tags["gate"] == "passed"
    status = client.get_experiment_by_name("s2ac-pipelines")
    [run] = client.search_runs([status.experiment_id])
    assert run.data.tags["state"] == "SUCCEEDED"
    assert list((tmp_path / "wd" / "pipeline-root").rglob("report.md"))
    # The small profile's settings with the -o overrides on top reached the tasks (not defaults
    # of pipeline parameters): 1 epoch (-o), 16 filters (small), the small profile's PSNR floor
    # and the overridden SSIM floor.
    train_run = client.get_run(champion.run_id)
    assert train_run.data.params["train.epochs"] == "1"
    assert train_run.data.params["train.generator_filters"] == "16"
    [decision] = [p for p in (tmp_path / "wd" / "pipeline-root").rglob("decision")]
    text = decision.read_text()
    assert "| psnr_floor | test |" in text and ">= 25" in text and ">= 0.5" in text


@pytest.mark.slow
def test_run_local_failure_is_recorded_by_the_exit_handler(tmp_path):
    """Earth Engine unreachable (no credentials): the export fails, the exit handler still runs
    and records the failure in MLflow, and the command ends with one error line."""
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    result = subprocess.run(
        [sys.executable, "-m", "s2ac", "pipeline", "run-local", "--workdir", str(tmp_path / "wd"),
         "-o", "pipeline.io_retries=0", "-o", f"registry.tracking_uri={tracking}",
         "-P", "source=earthengine", "-o", "data.earthengine.bucket=nowhere",
         "-o", "data.earthengine.max_retries=0"],
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


def test_submit_keeps_the_token_off_plain_http_and_says_when_the_host_is_dead(tmp_path):
    refused = _submit("http://kfp.example.invalid", "secret-token-7")
    assert refused.returncode == 2
    assert "refusing to send the KFP_TOKEN bearer token over plain http" in " ".join(
        refused.stderr.split()
    )
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = _submit(f"http://127.0.0.1:{port}", "secret-token-7", "--insecure")
    assert dead.returncode == 2
    text = " ".join(dead.stderr.split())
    assert f"KFP API at http://127.0.0.1:{port}" in text and "Traceback" not in dead.stderr
    assert "secret-token-7" not in dead.stdout + dead.stderr


def test_submit_fails_when_the_server_answers_without_a_run_id(tmp_path):
    api = FakeKfpApi(empty_run_answers=True)
    server, url = start(api)
    try:
        result = _submit(url, "t")
    finally:
        server.shutdown()
    assert result.returncode == 2
    assert "the answer has no run id" in " ".join(result.stderr.split())
    assert "started run" not in result.stdout
