"""The MLflow project: entry points call the CLI, conda.yaml matches the lock, and
``mlflow run . --env-manager local -e main -P profile=small`` runs the whole pipeline."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from s2ac.cli import app

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {"main", "synth", "validate", "train", "evaluate", "tune", "register"}


def _project() -> dict:
    return yaml.safe_load((ROOT / "MLproject").read_text())


def test_every_entry_point_is_a_valid_cli_call():
    project = _project()
    assert set(project["entry_points"]) == ENTRY_POINTS
    runner = CliRunner()
    for name, entry in project["entry_points"].items():
        values = {k: (v.get("default") or "x") for k, v in entry["parameters"].items()}
        command = entry["command"].format(**values)
        argv = shlex.split(command)
        assert argv[0] == "s2ac", name
        # The CLI parses the exact arguments (no unknown option or missing value) with --help.
        result = runner.invoke(app, [*argv[1:], "--help"])
        assert result.exit_code == 0, f"{name}: {command}\n{result.output}"
        options = {a.split("=")[0] for a in argv if a.startswith("--")}
        assert options <= set(re.findall(r"--[a-z-]+", result.output)), (name, options)


def test_conda_env_pins_python_and_the_lock():
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and "python" in d)
    assert python == "python=3.11" and 'requires-python = ">=3.11' in pyproject
    pip = next(d for d in conda["dependencies"] if isinstance(d, dict))["pip"]
    assert "-r requirements.txt" in pip and "-e ." in pip
    pins = (ROOT / "requirements.txt").read_text()
    for package in ("tensorflow-cpu", "mlflow", "optuna", "kfp", "great-expectations"):
        assert re.search(rf"^{package}==\d", pins, re.M), package


@pytest.mark.slow
@pytest.mark.service
def test_mlflow_run_main_small(mlflow_server: str, tmp_path: Path):
    out = tmp_path / "out"
    env = os.environ | {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "NO_PROXY": "127.0.0.1",
    }
    command = [
        str(Path(sys.executable).with_name("mlflow")), "run", str(ROOT), "--env-manager", "local",
        "-e", "main", "-P", "profile=small", "-P", f"out={out}", "--experiment-name", "mlproject",
        "-P", "overrides=data.n_patches=12 train.epochs=1 evaluate.figures=false",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    # A 1-epoch model cannot beat the best baseline by 20 % on ood: the run still exits 0 and
    # says which criteria failed.
    assert "quality gate: s2ac-pix2pix" in output
    assert "Gate FAILED on" in output and "rmse_vs_baselines_ood[B2] on ood" in output

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("mlproject")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "main"
    assert run.data.params["train.epochs"] == "1"  # the overrides parameter reached training
    # every stage logged into the project's run: training losses, evaluation, gate
    assert {
        "gen_l1",
        "val_gen_l1",
        "test_pix2pix_ssim",
        "test_identity_ssim",
        "test_linear_rmse_B2",
        "ood_pix2pix_ssim",
        "ood_oracle_rmse",
        "gate_passed",
    } <= set(run.data.metrics)
    [version] = [v for v in client.search_model_versions("name = 's2ac-pix2pix'")
                 if v.run_id == run.info.run_id]  # fmt: skip
    assert version.tags["gate"] == "failed" and version.tags["ood_linear_rmse"]
    assert (
        client.get_model_version_by_alias("s2ac-pix2pix", "challenger").version == version.version
    )
    assert (out / "evaluation" / "report.md").is_file()


def _render(entry_point: str, parameters: dict[str, str], tmp_path: Path) -> list[str]:
    """The command MLflow runs for ``entry_point`` (its own rendering and quoting)."""
    from mlflow.projects._project_spec import load_project

    entry = load_project(str(ROOT)).get_entry_point(entry_point)
    return shlex.split(entry.compute_command(parameters, str(tmp_path)))


@pytest.mark.parametrize(
    ("overrides", "expected"), [(None, None), ("train.lambda_l1=7 train.epochs=2", 7.0)]
)
def test_train_entry_point_keeps_the_profiles_lambda_unless_given_one(
    overrides, expected, tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from s2ac.config import load_config
    from s2ac.orchestration import stages

    seen = {}

    def train(config, dataset, checkpoints=None, *, resume=False):
        seen["config"] = config
        return SimpleNamespace(epochs_completed=0, steps=0, stopped_early=False,
                               checkpoint_dir=checkpoints, run_id="r")  # fmt: skip

    monkeypatch.setattr(stages, "train", train)
    parameters = {"profile": "small"} | ({"overrides": overrides} if overrides else {})
    argv = _render("train", parameters, tmp_path)
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, result.output
    small = load_config("small")
    assert seen["config"].train.lambda_l1 == (expected or small.train.lambda_l1)
    assert seen["config"].train.epochs == (2 if overrides else small.train.epochs)
    assert seen["config"].train.learning_rate == small.train.learning_rate
