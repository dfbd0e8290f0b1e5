"""Model registry: register a trained generator, decide the quality gate, move the aliases.

Aliases only (stages are deprecated): every new version becomes ``challenger``; ``champion`` moves
to it only if every gate criterion holds. The writes are ordered so that a crash at any point
leaves the registry consistent:

1. the version is created tagged ``gate=pending`` (a pending version never holds ``champion``);
2. ``challenger`` moves to it;
3. under the promotion lock, the current champion is scored on the same test set and the gate
   decided on the gate's own scoring of the challenger (never on numbers it is handed); the
   decision is logged to the training run and tagged on the version;
4. only then, and only if the gate passed, ``champion`` moves.

The lock serializes steps 3 and 4 across processes, so two concurrent registrations cannot both
compare against the same old champion and the worse one win. It is a registered model named
``<model>.promotion-lock``: creating it is atomic on every MLflow backend (unique name).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from s2ac.bands import BAND_NAMES
from s2ac.config import Config, GateConfig
from s2ac.console import log
from s2ac.data.integrity import read_manifest
from s2ac.errors import S2ACError
from s2ac.evaluation.evaluate import MODEL_COLUMN, evaluate, read_evaluation
from s2ac.registry.gate import CHAMPION, GateDecision, decide
from s2ac.registry.tracking import git_commit, set_experiment

LOGGED_MODEL_NAME = "generator"
GATE_TAG = "gate"
COMPARED_TAG = "gate.compared_with"  # champion version the gate compared against
HEADLINE = ("ssim", "psnr", "rmse", "mae")


class RegistryError(S2ACError):
    """The registry could not be read or written as required."""


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    decision: GateDecision
    promoted: bool
    champion_version: str | None  # after this registration
    model_uri: str = field(default="")


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
    name: str, version: str, dataset_dir: str | Path, splits: list[str], config: Config
) -> dict[str, pd.Series]:
    """Mean metrics of a registered version on each split (same scoring as ``s2ac evaluate``)."""
    from s2ac.data.input import manifest_geometry
    from s2ac.evaluation.evaluate import load_generator, score_methods, side_by_side

    geometry = manifest_geometry(read_manifest(dataset_dir))
    method = {CHAMPION: load_generator(f"models:/{name}/{version}", geometry)}
    return {
        split: side_by_side(score_methods(dataset_dir, method, split, config.evaluate))[CHAMPION]
        for split in splits
    }


def _gate_splits(gate: GateConfig, reference: str | None = None) -> list[str]:
    """Splits the active criteria read (only those comparing with ``reference`` if given)."""
    return sorted({c.split for c in gate.active().values()
                   if reference is None or c.reference == reference})  # fmt: skip


def _version_tags(
    digest: str, dataset_name: str, comparison: dict[str, pd.DataFrame]
) -> dict[str, str]:
    tags = {
        GATE_TAG: "pending",
        "dataset_digest": digest,
        "dataset_name": dataset_name,
        "git_commit": git_commit(),
        "evaluated_on": ",".join(comparison),
    }
    for split, table in comparison.items():
        tags |= {f"{split}_{key}": f"{table.loc[key, MODEL_COLUMN]:.4f}" for key in HEADLINE}
        for method in table.columns.drop(MODEL_COLUMN):
            tags[f"{split}_{method}_rmse"] = f"{table.loc['rmse', method]:.4f}"
            tags[f"{split}_{method}_ssim"] = f"{table.loc['ssim', method]:.4f}"
    return tags


def _description(comparison: dict[str, pd.DataFrame], run_id: str, digest: str) -> str:
    rows = ["ssim", "psnr", "rmse"] + [f"rmse_{band}" for band in BAND_NAMES]
    tables = "\n\n".join(
        f"**{split}**\n\n{table.loc[rows].round(4).to_markdown()}"
        for split, table in comparison.items()
    )
    return (
        f"Pix2Pix generator from training run `{run_id}`, dataset digest `{digest[:16]}`. Mean "
        f"metrics, model next to the baselines (identity, dos, 6s, linear, oracle), on each "
        f"split:\n\n{tables}\n\nThe evaluation report and figures are attached to the model "
        "(artifacts `evaluation/`) and to the run."
    )


def gate_evaluation(
    evaluation_dir: str | Path, dataset_dir: str | Path, model_uri: str, config: Config
) -> tuple[Path | str, dict[str, Any], dict[str, pd.DataFrame]]:
    """The evaluation the gate decides on: always its own scoring of ``model_uri`` (the logged
    model, not a checkpoint) on ``dataset_dir``, with every baseline.

    ``evaluation_dir`` (the pipeline's evaluate step) must be complete, but its numbers are only
    compared, never trusted: a forged, stale or half-written folder once promoted a model trained
    on an empty shard. Where the two disagree the log says so."""
    _, given = read_evaluation(evaluation_dir)  # refuses an incomplete or unreadable folder
    fresh = Path(tempfile.mkdtemp(prefix="s2ac-gate-")) / "evaluation"
    log.info("gate: scoring %s on %s (the decision never reads %s)", model_uri, dataset_dir,
             evaluation_dir)  # fmt: skip
    result = evaluate(dataset_dir, model_uri, config.evaluate, fresh)
    for split, table in result.comparison.items():
        claimed = given.get(split)
        ours = table.loc["rmse", MODEL_COLUMN]
        theirs = claimed.loc["rmse", MODEL_COLUMN] if claimed is not None and (
            MODEL_COLUMN in claimed.columns and "rmse" in claimed.index) else None  # fmt: skip
        if theirs is None or abs(float(theirs) - float(ours)) > 1e-4:
            log.warning(
                "%s: %s RMSE %s differs from the gate's own %.4f; ignored", evaluation_dir,
                split, "missing" if theirs is None else f"{float(theirs):.4f}", ours,
            )  # fmt: skip
    return fresh, result.record, result.comparison


def register(
    run_id: str,
    evaluation_dir: str | Path,
    dataset_dir: str | Path,
    config: Config,
    promote: bool = True,
) -> Registration:
    """Register the generator of training run ``run_id`` and gate it (see module docstring).

    ``promote=False`` decides and records the gate but leaves ``champion`` to a separate
    :func:`promote` call (the KFP pipeline's ``dsl.If(gate passed)`` branch)."""
    registry = config.registry
    set_experiment(registry)
    client = MlflowClient()
    root = str(dataset_dir).rstrip("/")
    manifest = read_manifest(root)
    digest = str(manifest.get("digest", "unknown"))
    model = logged_generator(client, run_id)
    evaluation_dir, _, comparison = gate_evaluation(
        evaluation_dir, root, f"models:/{model.model_id}", config
    )
    if "://" not in str(evaluation_dir):
        client.log_model_artifacts(model.model_id, str(evaluation_dir), "evaluation")
    for split, table in comparison.items():  # shown on the model's page in the UI
        for key in HEADLINE:
            value = float(table.loc[key, MODEL_COLUMN])
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
            tags=_version_tags(digest, str(manifest.get("name", "s2ac-dataset")), comparison),
            description=_description(comparison, run_id, digest),
        )  # fmt: skip
    client.set_registered_model_alias(name, registry.challenger_alias, version.version)
    log.info("registered %s version %s (alias %s)", name, version.version,
             registry.challenger_alias)  # fmt: skip

    with promotion_lock(client, name, registry.lock_timeout_s):
        champion = alias_version(client, name, registry.champion_alias)
        champion_scores = None
        champion_splits = [s for s in _gate_splits(config.gate, CHAMPION) if s in comparison]
        if champion is not None and champion_splits:
            log.info("scoring champion v%s on %s of the same dataset (digest %s)",
                     champion.version, ", ".join(champion_splits), digest[:12])  # fmt: skip
            champion_scores = score_version(
                name, str(champion.version), root, champion_splits, config
            )
        decision = decide(
            comparison, config.gate, MODEL_COLUMN, champion_scores,
            str(champion.version) if champion is not None else None, digest,
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
    for index, c in enumerate(decision.criteria):
        value = "-" if c.value is None else f"{c.value:.4f}"
        note = f" [{c.note}]" if c.note else ""
        client.set_model_version_tag(
            name, version, f"gate.{index:02d}", f"{c.name} on {c.split}: {value} {c.rule}{note} "
            f"({c.status.upper() if c.status == 'fail' else c.status})",
        )  # fmt: skip
    client.set_model_version_tag(name, version, COMPARED_TAG, decision.champion_version or "none")
    client.set_model_version_tag(name, version, "gate.dataset_digest", str(decision.dataset_digest))
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
