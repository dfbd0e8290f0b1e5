"""Every KFP component called as plain Python (``.python_func``) with real artifacts on disk:
each is one stage call, and its outputs are what the next task reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl
from mlflow.tracking import MlflowClient

from s2ac.config import PipelineConfig, load_config
from s2ac.orchestration.kubeflow import components

C = components(PipelineConfig())


def _artifact(kind: type, path: Path) -> dsl.Artifact:
    return kind(name=path.name, uri=str(path), metadata={})


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    """synth → validate → train → evaluate → register → promote → record_status, as the training
    pipeline wires them (small profile, tiny data, a relaxed gate)."""
    root = tmp_path_factory.mktemp("components")
    tracking = f"sqlite:///{root}/mlflow.db"
    overrides = [
        "data.n_patches=10", "train.epochs=1",
        "evaluate.figures=false", "evaluate.baselines=[identity]",
        f"registry.tracking_uri={tracking}",
        "gate.criteria.ssim_floor.bound=0.5", "gate.criteria.psnr_floor.bound=15",
        "gate.criteria.rmse_vs_baselines_test=null", "gate.criteria.rmse_vs_baselines_ood=null",
    ]  # fmt: skip
    common = {"profile": "small", "overrides": overrides}
    out: dict = {"root": root, "tracking": tracking, "common": common}
    dataset = _artifact(dsl.Dataset, root / "dataset")
    out["digest"] = C.synth.python_func(**common, dataset=dataset)
    docs, page = _artifact(dsl.Artifact, root / "docs"), _artifact(dsl.HTML, root / "docs.html")
    C.validate.python_func(**common, dataset_digest=out["digest"], dataset=dataset, docs=docs,
                           report=page)  # fmt: skip
    model = _artifact(dsl.Model, root / "model")
    out["run_id"] = C.train.python_func(**common, dataset_digest=out["digest"], dataset=dataset,
                                        model=model)  # fmt: skip
    evaluation = _artifact(dsl.Artifact, root / "evaluation")
    metrics = _artifact(dsl.Metrics, root / "metrics")
    report = _artifact(dsl.Markdown, root / "report.md")
    C.evaluate.python_func(**common, run_id=out["run_id"], dataset=dataset, model=model,
                           validation=docs, evaluation=evaluation, metrics=metrics,
                           report=report)  # fmt: skip
    decision = _artifact(dsl.Markdown, root / "decision.md")
    out["passed"] = C.register.python_func(**common, run_id=out["run_id"], dataset=dataset,
                                       evaluation=evaluation, decision=decision)  # fmt: skip
    out["promoted"] = C.promote.python_func(**common, run_id=out["run_id"])
    status = dsl.PipelineTaskFinalStatus(
        state="SUCCEEDED", pipeline_job_resource_name="job", pipeline_task_name="t",
        error_code=None, error_message=None,
    )  # fmt: skip
    C.record_status.python_func(**common, pipeline="s2ac-training", status=status)
    out |= {"dataset": dataset, "docs": docs, "page": page, "model": model, "metrics": metrics,
            "report": report, "decision": decision}  # fmt: skip
    return out


@pytest.mark.slow
def test_training_components_chain_through_their_artifacts(chain):
    assert len(chain["digest"]) == 64 and (Path(chain["dataset"].path) / "manifest.json").is_file()
    assert (Path(chain["docs"].path) / "index.html").is_file()
    assert "<html" in Path(chain["page"].path).read_text().lower()
    assert chain["model"].metadata["dataset_digest"] == chain["digest"]
    assert (Path(chain["model"].path) / "best").is_dir()
    assert chain["metrics"].metadata["test_pix2pix_ssim"] > 0.5
    assert "ood" in Path(chain["report"].path).read_text()
    assert chain["passed"] is True and chain["promoted"] is True
    decision = Path(chain["decision"].path).read_text()
    assert "| ssim_floor | test |" in decision and ">= 0.5" in decision
    assert "| psnr_floor | test |" in decision and ">= 15" in decision
    client = MlflowClient(chain["tracking"])
    run = client.get_run(chain["run_id"])
    # the profile's values, with the run's overrides on top, reached the training task
    small = load_config("small")
    assert run.data.params["train.epochs"] == "1"
    assert run.data.params["train.lambda_l1"] == str(small.train.lambda_l1)
    assert run.data.params["train.generator_filters"] == str(small.train.generator_filters)
    # the evaluate task logged the validation data docs into the training run
    logged = {a.path for a in client.list_artifacts(chain["run_id"])}
    assert {"validation", "evaluation"} <= logged
    champion = client.get_model_version_by_alias("s2ac-pix2pix", "champion")
    assert champion.run_id == chain["run_id"]
    [status] = client.search_runs([client.get_experiment_by_name("s2ac-pipelines").experiment_id])
    assert status.data.tags["state"] == "SUCCEEDED"


@pytest.mark.slow
def test_tuning_components_hand_the_best_values_to_training_as_overrides(chain):
    storage = f"sqlite:///{chain['root']}/optuna.db"
    overrides = [*chain["common"]["overrides"], f"tune.storage={storage}", "tune.n_trials=1",
                 "tune.epochs_per_trial=1", "tune.enqueue_train_config=false"]  # fmt: skip
    common = {"profile": "small", "overrides": overrides}
    parent = C.open_study.python_func(**common)
    ran = C.tune_worker.python_func(**common, worker=0, parent_run_id=parent,
                                    dataset=chain["dataset"])  # fmt: skip
    assert ran == "0"
    tuned = C.best_overrides.python_func(**common)
    assert tuned[: len(overrides)] == overrides
    extra = dict(item.split("=", 1) for item in tuned[len(overrides) :])
    assert set(extra) == {"train.lambda_l1", "train.learning_rate"}
    config = load_config("small", overrides=tuned)
    assert config.train.lambda_l1 == pytest.approx(float(extra["train.lambda_l1"]))
    low, high = config.tune.lambda_l1_range
    assert low <= config.train.lambda_l1 <= high


def test_export_component_names_the_unreachable_server(tmp_path, monkeypatch):
    monkeypatch.setenv("EE_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    dataset = _artifact(dsl.Dataset, tmp_path / "dataset")
    overrides = ["data.earthengine.bucket=nowhere", "data.earthengine.max_retries=0"]
    with pytest.raises(Exception, match=r"credentials|127\.0\.0\.1:9") as info:
        C.export.python_func(profile="small", overrides=overrides, dataset=dataset)
    assert "Traceback" not in str(info.value)
    assert not (tmp_path / "dataset").exists()  # nothing half-written


def test_correction_components_pin_a_path_and_list_the_given_scenes(tmp_path):
    """Outside the registry a model is its own pinned URI with no version; a comma-separated
    source is the fan-out as given (sorted, duplicates dropped). The registry and Cloud Storage
    cases run end to end in test_correction_pipeline.py."""
    model = str(tmp_path / "generator.keras")
    pinned = C.pin_model.python_func(profile="small", overrides=[], model=model)
    assert (pinned.model_uri, pinned.version) == (model, "")
    source = "gs://b/2.tif, gs://b/1.zip,gs://b/2.tif"
    scenes = C.find_scenes.python_func(profile="small", overrides=[], source=source)
    assert scenes == ["gs://b/1.zip", "gs://b/2.tif"]
