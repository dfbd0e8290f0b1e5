"""Model registry: register a trained generator, decide the quality gate, move the aliases.

Aliases only (stages are deprecated): every new version becomes ``challenger``; ``champion`` moves
to it only if every gate criterion holds. The writes are ordered so that a crash at any point
leaves the registry consistent:

1. the version is created tagged ``gate=pending`` (a pending version never holds ``champion``);
2. ``challenger`` moves to it;
3. under the promotion lock, the current champion is scored on the same test set and the gate
   decided; the decision is logged to the training run and tagged on the version;
4. only then, and only if the gate passed, ``champion`` moves.

The lock serializes steps 3 and 4 across processes, so two concurrent registrations cannot both
compare against the same old champion and the worse one win. It is a registered model named
``<model>.promotion-lock``: creating it is atomic on every MLflow backend (unique name).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from s2ac.bands import BAND_NAMES
from s2ac.config import Config, GateConfig
from s2ac.console import log
from s2ac.errors import InputDataError, S2ACError
from s2ac.io.storage import exists, read_bytes
from s2ac.tracking import git_commit, set_experiment

MODEL_COLUMN = "pix2pix"
LOGGED_MODEL_NAME = "generator"
GATE_TAG = "gate"
COMPARED_TAG = "gate.compared_with"  # champion version the gate compared against
HEADLINE = ("ssim", "psnr", "rmse", "mae")


class RegistryError(S2ACError):
    """The registry could not be read or written as required."""


@dataclass(frozen=True)
class Criterion:
    """One gate condition: ``value <op> threshold``."""

    name: str
    value: float
    threshold: float
    op: Literal[">=", "<="]

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold


@dataclass(frozen=True)
class GateDecision:
    criteria: tuple[Criterion, ...]
    champion_version: str | None = None

    @property
    def passed(self) -> bool:
        return all(criterion.passed for criterion in self.criteria)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "champion_version": self.champion_version,
            "criteria": [
                {"name": c.name, "value": c.value, "op": c.op, "threshold": c.threshold,
                 "passed": c.passed}
                for c in self.criteria
            ],
        }  # fmt: skip

    def markdown(self) -> str:
        lines = ["| criterion | value | rule | passed |", "|---|---|---|---|"]
        for c in self.criteria:
            verdict = "yes" if c.passed else "NO"
            lines.append(f"| {c.name} | {c.value:.4f} | {c.op} {c.threshold:.4f} | {verdict} |")
        verdict = "PASSED" if self.passed else "FAILED"
        return "\n".join(lines) + f"\n\nGate **{verdict}**.\n"


def decide(
    model: pd.Series,
    identity: pd.Series,
    gate: GateConfig,
    champion: pd.Series | None = None,
    champion_version: str | None = None,
) -> GateDecision:
    """The gate over mean metrics (``ssim``, ``psnr``, ``rmse_<band>``) on one test set."""
    criteria = [
        Criterion("mean SSIM", float(model["ssim"]), gate.min_mean_ssim, ">="),
        Criterion("mean PSNR (dB)", float(model["psnr"]), gate.min_mean_psnr, ">="),
    ]
    for band in BAND_NAMES:
        ratio = float(model[f"rmse_{band}"]) / float(identity[f"rmse_{band}"])
        criteria.append(
            Criterion(f"RMSE {band} / identity", ratio, gate.max_rmse_ratio_to_identity, "<=")
        )
    if gate.require_beats_champion and champion is not None:
        criteria += [
            Criterion(
                f"mean SSIM vs champion v{champion_version}", float(model["ssim"]),
                float(champion["ssim"]) - gate.champion_ssim_tolerance, ">=",
            ),
            Criterion(
                f"mean PSNR vs champion v{champion_version}", float(model["psnr"]),
                float(champion["psnr"]) - gate.champion_psnr_tolerance, ">=",
            ),
        ]  # fmt: skip
    return GateDecision(tuple(criteria), champion_version)


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    decision: GateDecision
    promoted: bool
    champion_version: str | None  # after this registration
    model_uri: str = field(default="")


def read_comparison(evaluation_dir: str | Path) -> pd.DataFrame:
    """The ``comparison.csv`` written by :func:`s2ac.evaluate.evaluate` (metric x method)."""
    path = f"{str(evaluation_dir).rstrip('/')}/comparison.csv"
    if not exists(path):
        raise InputDataError(path, "no evaluation table", "run `s2ac evaluate` with --model first")
    import io

    table = pd.read_csv(io.BytesIO(read_bytes(path)), index_col=0)
    for column in (MODEL_COLUMN, "identity"):
        if column not in table.columns:
            raise InputDataError(path, f"no {column!r} column", "evaluate with a model and the "
                                 "identity baseline (evaluate.baselines)")  # fmt: skip
    return table


def logged_generator(client: MlflowClient, run_id: str) -> Any:
    """The generator logged by training run ``run_id`` (a LoggedModel)."""
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryError(f"MLflow run {run_id}: not found ({exc.message})") from None
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{LOGGED_MODEL_NAME}'",
    )
    if not models:
        raise RegistryError(f"MLflow run {run_id}: no logged model {LOGGED_MODEL_NAME!r}")
    return max(models, key=lambda model: model.creation_timestamp)


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(
            name,
            description="Pix2Pix atmospheric correction of Sentinel-2 (L1C TOA -> L2A SR, bands "
            "B2, B3, B4, B8). Aliases: `champion` (passed the quality gate, serve this), "
            "`challenger` (newest candidate).",
        )
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


@contextmanager
def promotion_lock(
    client: MlflowClient, name: str, timeout_s: float, poll_s: float = 0.5
) -> Iterator[None]:
    """Hold the promotion lock of model ``name``; break it when older than ``timeout_s``."""
    lock, owner = f"{name}.promotion-lock", uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                lock, tags={"owner": owner, "acquired_at": str(time.time())},
                description=f"Held while a version of {name} is gated; removed after.",
            )  # fmt: skip
            break
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        _break_if_stale(client, lock, timeout_s)
        if time.monotonic() > deadline:
            raise RegistryError(f"{lock}: still held after {timeout_s:g} s")
        time.sleep(poll_s)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(lock)
        except MlflowException as exc:  # broken by another process as stale: nothing to undo
            log.warning("releasing %s: %s", lock, exc.message)


def _break_if_stale(client: MlflowClient, lock: str, timeout_s: float) -> None:
    try:
        acquired = float(client.get_registered_model(lock).tags.get("acquired_at", "0"))
    except MlflowException:
        return  # released meanwhile
    if time.time() - acquired > timeout_s:
        log.warning("breaking stale %s (held %.0f s)", lock, time.time() - acquired)
        with suppress(MlflowException):
            client.delete_registered_model(lock)


def score_version(
    name: str, version: str, dataset_dir: str | Path, split: str, config: Config
) -> pd.Series:
    """Mean metrics of a registered version on ``split`` (same scoring as ``s2ac evaluate``)."""
    import mlflow.pyfunc
    import numpy as np

    from s2ac.evaluate import score_methods, side_by_side

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    scores = score_methods(
        dataset_dir, {"champion": lambda toa: np.asarray(model.predict(toa))}, split,
        config.evaluate,
    )  # fmt: skip
    return side_by_side(scores)["champion"]


def _version_tags(
    manifest: dict[str, Any], metrics: dict[str, float], split: str
) -> dict[str, str]:
    tags = {
        GATE_TAG: "pending",
        "dataset_digest": str(manifest.get("digest", "unknown")),
        "dataset_name": str(manifest.get("name", "s2ac-dataset")),
        "git_commit": git_commit(),
        "evaluated_on": split,
    }
    return tags | {f"{split}_{key}": f"{value:.4f}" for key, value in metrics.items()}


def _description(comparison: pd.DataFrame, run_id: str, manifest: dict[str, Any]) -> str:
    rows = ["ssim", "psnr", "rmse"] + [f"rmse_{band}" for band in BAND_NAMES]
    table = comparison.loc[rows].round(4).to_markdown()
    return (
        f"Pix2Pix generator from training run `{run_id}`, dataset digest "
        f"`{str(manifest.get('digest', ''))[:16]}`. Mean metrics on the test split, model next to "
        f"the baselines:\n\n{table}\n\nThe evaluation report and figures are attached to the "
        "model (artifacts `evaluation/`) and to the run."
    )


def register(
    run_id: str,
    evaluation_dir: str | Path,
    dataset_dir: str | Path,
    config: Config,
    split: str = "test",
    promote: bool = True,
) -> Registration:
    """Register the generator of training run ``run_id`` and gate it (see module docstring).

    ``promote=False`` decides and records the gate but leaves ``champion`` to a separate
    :func:`promote` call (the KFP pipeline's ``dsl.If(gate passed)`` branch)."""
    registry = config.registry
    set_experiment(registry)
    client = MlflowClient()
    comparison = read_comparison(evaluation_dir)
    root = str(dataset_dir).rstrip("/")
    manifest = json.loads(read_bytes(f"{root}/manifest.json"))
    model = logged_generator(client, run_id)
    scores = comparison[MODEL_COLUMN]
    metrics = {key: float(scores[key]) for key in HEADLINE}
    if isinstance(evaluation_dir, Path) or "://" not in str(evaluation_dir):
        client.log_model_artifacts(model.model_id, str(evaluation_dir), "evaluation")
    for key, value in metrics.items():  # shown on the model's page in the UI
        client.log_metric(run_id, f"{split}_{key}", value, model_id=model.model_id)

    name = registry.model_name
    _ensure_registered_model(client, name)
    # Idempotent per training run: a retried task (KFP retries the gate) must not add versions.
    existing = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    if existing:
        version = max(existing, key=lambda v: int(v.version))
        log.info("%s: run %s is already version %s", name, run_id, version.version)
    else:
        version = client.create_model_version(
            name, source=f"models:/{model.model_id}", run_id=run_id, model_id=model.model_id,
            tags=_version_tags(manifest, metrics, split),
            description=_description(comparison, run_id, manifest),
        )  # fmt: skip
    client.set_registered_model_alias(name, registry.challenger_alias, version.version)
    log.info("registered %s version %s (alias %s)", name, version.version,
             registry.challenger_alias)  # fmt: skip

    with promotion_lock(client, name, registry.lock_timeout_s):
        champion = alias_version(client, name, registry.champion_alias)
        champion_scores = None
        if champion is not None and config.gate.require_beats_champion:
            log.info("scoring champion v%s on the same %s split", champion.version, split)
            champion_scores = score_version(name, str(champion.version), root, split, config)
        decision = decide(
            scores, comparison["identity"], config.gate, champion_scores,
            str(champion.version) if champion is not None else None,
        )  # fmt: skip
        _record_decision(client, run_id, name, version.version, decision)
        if decision.passed and promote:
            client.set_registered_model_alias(name, registry.champion_alias, version.version)
        after = alias_version(client, name, registry.champion_alias)
    return Registration(
        name=name,
        version=str(version.version),
        decision=decision,
        promoted=decision.passed and promote,
        champion_version=str(after.version) if after is not None else None,
        model_uri=f"models:/{name}/{version.version}",
    )


def _record_decision(
    client: MlflowClient, run_id: str, name: str, version: str, decision: GateDecision
) -> None:
    """The decision in the run (metrics, gate.json, gate.md) and on the version (tags)."""
    client.log_metric(run_id, "gate_passed", float(decision.passed))
    client.log_dict(run_id, decision.to_dict(), f"gate/v{version}.json")
    client.log_text(run_id, decision.markdown(), f"gate/v{version}.md")
    for index, criterion in enumerate(decision.criteria):
        client.set_model_version_tag(
            name, version, f"gate.{index:02d}",
            f"{criterion.name}: {criterion.value:.4f} {criterion.op} {criterion.threshold:.4f} "
            f"({'pass' if criterion.passed else 'FAIL'})",
        )  # fmt: skip
    client.set_model_version_tag(name, version, COMPARED_TAG, decision.champion_version or "none")
    client.set_model_version_tag(name, version, GATE_TAG, "passed" if decision.passed else "failed")


def version_of_run(run_id: str, config: Config) -> str:
    """The version registered for training run ``run_id`` (registration is idempotent per run)."""
    set_experiment(config.registry)
    name = config.registry.model_name
    versions = MlflowClient().search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    if not versions:
        raise RegistryError(f"{name}: no version registered for run {run_id}")
    return str(max(int(v.version) for v in versions))


def promote(version: str, config: Config) -> bool:
    """Move ``champion`` to ``version`` if its recorded gate passed against the model that is
    still champion now; False (and ``champion`` untouched) if the champion changed meanwhile."""
    registry = config.registry
    set_experiment(registry)
    client = MlflowClient()
    name = registry.model_name
    with promotion_lock(client, name, registry.lock_timeout_s):
        tags = client.get_model_version(name, version).tags
        if tags.get(GATE_TAG) != "passed":
            raise RegistryError(f"{name} v{version}: gate is {tags.get(GATE_TAG)!r}, not promoting")
        current = alias_version(client, name, registry.champion_alias)
        now = str(current.version) if current is not None else "none"
        if tags.get(COMPARED_TAG) != now:
            log.warning("%s v%s was gated against champion %s, now %s: register it again",
                        name, version, tags.get(COMPARED_TAG), now)  # fmt: skip
            return False
        client.set_registered_model_alias(name, registry.champion_alias, version)
    log.info("%s v%s is now %s", name, version, registry.champion_alias)
    return True
