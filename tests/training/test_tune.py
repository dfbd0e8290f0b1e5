"""Optuna sweep on a tiny dataset: trials run, one is pruned, the study resumes, and two
independent processes share one SQLite study without losing trials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from s2ac.config import Config, load_config
from s2ac.training.tune import PARENT_RUN_ATTR, open_study, tune

pytestmark = pytest.mark.slow

# No sample figures in the trials (the small profile draws one every epoch; test_train checks
# them): nothing here reads them.
TINY = [
    "train.generator_filters=4", "train.discriminator_filters=4", "tune.epochs_per_trial=2",
    "tune.pruner_startup_trials=1", "tune.learning_rate_range=[1.0e-7, 1.0e-3]",
    "train.figure_every=1000",
]  # fmt: skip


def _overrides(tmp_path: Path, tracking: str) -> list[str]:
    return [
        *TINY, f"tune.storage=sqlite:///{tmp_path}/optuna.db",
        f"tune.checkpoint_dir={tmp_path}/trials", f"registry.tracking_uri={tracking}",
    ]  # fmt: skip


def _children(config: Config, parent: str) -> list:
    mlflow.set_tracking_uri(config.registry.tracking_uri)
    experiment = mlflow.get_experiment_by_name(config.registry.experiment)
    return mlflow.MlflowClient().search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )


def test_study_runs_prunes_and_resumes(tiny_dataset: Path, tmp_path: Path):
    config = load_config(
        "small", overrides=[*_overrides(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"),
                            "tune.n_trials=3"],
    )  # fmt: skip
    study = open_study(config)  # creates it: trial 0 = the train config (lr 2e-4, lambda 100)
    study.enqueue_trial({"lambda_l1": 100.0, "learning_rate": 1e-7})  # learns nothing: pruned

    result = tune(tiny_dataset, config)
    states = {t["number"]: t["state"] for t in result.trials}
    assert states[0] == "COMPLETE" and states[1] == "PRUNED" and len(states) == 3
    assert result.trials[0]["params"] == {"lambda_l1": 100.0, "learning_rate": 2e-4}
    assert result.best_value == min(t["value"] for t in result.trials if t["state"] == "COMPLETE")
    assert result.config.train.learning_rate == result.best_params["learning_rate"]
    assert result.config.train.epochs == config.train.epochs  # only the tuned values change

    children = _children(config, result.parent_run_id)
    assert sorted(r.data.tags["optuna.trial"] for r in children) == ["0", "1", "2"]
    pruned = next(r for r in children if r.data.tags["optuna.trial"] == "1")
    assert pruned.data.tags["optuna.state"] == "pruned"
    assert pruned.data.metrics["epochs_completed"] == 1  # stopped after the first report
    assert float(pruned.data.params["train.learning_rate"]) == 1e-7
    client = mlflow.MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert float(parent.data.tags["best.learning_rate"]) == pytest.approx(
        result.best_params["learning_rate"], rel=1e-5
    )
    plots = {a.path for a in client.list_artifacts(result.parent_run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/best.json"} <= plots

    resumed = load_config("small", overrides=[*_overrides(tmp_path, config.registry.tracking_uri),
                                              "tune.n_trials=4"])  # fmt: skip
    again = tune(tiny_dataset, resumed)
    assert len(again.trials) == 4 and again.parent_run_id == result.parent_run_id
    assert [t["state"] for t in again.trials[:3]] == [t["state"] for t in result.trials]
    assert len(_children(config, result.parent_run_id)) == 4


def test_two_processes_share_one_study(tiny_dataset: Path, tmp_path: Path, mlflow_server: str):
    # One epoch a trial: with no pruner, what is shared is the study and its trial numbers.
    overrides = [*_overrides(tmp_path, mlflow_server), "registry.experiment=tune-shared",
                 "tune.pruner=none", "tune.epochs_per_trial=1"]  # fmt: skip
    command = [sys.executable, "-m", "s2ac", "-q", "tune", str(tiny_dataset), "--profile", "small",
               "--n-trials", "2", *[arg for o in overrides for arg in ("-o", o)]]  # fmt: skip
    processes = [
        subprocess.Popen(
            [*command, "--best-config", str(tmp_path / f"best{i}.yaml")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=os.environ | {"NO_PROXY": "127.0.0.1"},
        )
        for i in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-3000:] for o in outputs)

    study = optuna.load_study(study_name="s2ac-pix2pix", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert 2 <= len(trials) <= 3  # the budget, plus at most one trial per extra worker
    config = load_config("small", overrides=overrides)
    children = _children(config, study.user_attrs[PARENT_RUN_ATTR])
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == [t.number for t in trials]
    assert len({r.data.tags["optuna.trial"] for r in children}) == len(trials)
