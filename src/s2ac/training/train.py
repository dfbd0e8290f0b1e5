"""Training: tf.data in, ``Pix2Pix.fit`` with callbacks, MLflow tracking, checkpoints and resume.

Resume is exact: the training stream is one seeded, repeated tf.data pipeline, and a resumed run
skips the batches of the epochs already done, so it sees the batches an uninterrupted run would
see; ``last.keras`` holds both networks and both optimizers, and ``state.json`` the epoch, the
early-stopping counters and the MLflow run id. A killed run continued with ``resume=True`` ends
where an uninterrupted one ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from s2ac.config import Config
from s2ac.console import log
from s2ac.data.input import make_dataset, manifest_geometry
from s2ac.data.tfrecord import check_tfrecord, iter_records, list_tfrecords
from s2ac.errors import InputDataError
from s2ac.io.storage import exists, localize_files, read_bytes
from s2ac.model.devices import configure_precision, strategy
from s2ac.model.pix2pix import Pix2Pix, build_pix2pix
from s2ac.registry.tracking import log_dataset, start_run

LAST = "last.keras"
STATE = "state.json"
MONITOR = "val_gen_l1"


@dataclass(frozen=True)
class TrainResult:
    checkpoint_dir: Path
    epochs_completed: int
    steps: int
    stopped_early: bool
    history: dict[str, list[float]]
    run_id: str | None


def check_dataset(dataset_dir: str) -> dict[str, Any]:
    """Fail before any training when the manifest, a split or the record schema is wrong."""
    root = dataset_dir.rstrip("/")
    if not exists(f"{root}/manifest.json"):
        raise InputDataError(
            f"{root}/manifest.json", "no dataset manifest", "build one with `s2ac data synth`"
        )
    manifest = json.loads(read_bytes(f"{root}/manifest.json"))
    for split in ("train", "val"):
        files = list_tfrecords(f"{root}/{split}")
        check_tfrecord(localize_files(files[:1])[0], int(manifest["patch_size"]))
    return manifest


def _geometry(manifest: dict[str, Any], root: str) -> dict[str, Any]:
    """Per-sample geometry for the physics generator; an error if the dataset records none."""
    geometry = manifest_geometry(manifest)
    if not geometry:
        raise InputDataError(
            f"{root}/manifest.json", "no per-sample geometry (sun/view angles) in the manifest",
            "train.generator=physics needs it; use the embedded dataset or train.generator=unet",
        )  # fmt: skip
    return geometry


def _steps_per_epoch(manifest: dict[str, Any], batch_size: int) -> int:
    n_train = int(manifest["split"]["counts"]["train"])
    if n_train < batch_size:
        raise InputDataError("train split", f"{n_train} patches, fewer than batch {batch_size}")
    return n_train // batch_size


class Checkpoint(keras.callbacks.Callback):
    """Every epoch: ``last.keras`` (G, D, optimizers) and ``state.json``, both atomically, the
    networks of that epoch, and in ``best/`` those of the epoch with the lowest validation loss."""

    def __init__(self, directory: Path, stopper: keras.callbacks.EarlyStopping, run_id: str | None):
        super().__init__()
        self.directory, self.stopper, self.run_id = directory, stopper, run_id
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        temporary = self.directory / f".{LAST}.tmp.keras"
        self.model.save(temporary)
        os.replace(temporary, self.directory / LAST)
        self.model.save_models(self.directory)  # generator.keras, discriminator.keras
        if self.stopper.best_epoch == epoch:  # the epoch with the lowest validation L1 so far
            self.model.save_models(self.directory / "best")
        state = {
            "epoch": epoch + 1,
            "wait": self.stopper.wait,
            "best": float(self.stopper.best),
            "best_epoch": self.stopper.best_epoch,
            "run_id": self.run_id,
            "history": self.history,
        }
        temporary_state = self.directory / f".{STATE}.tmp"
        temporary_state.write_text(json.dumps(state))
        os.replace(temporary_state, self.directory / STATE)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that starts from saved counters instead of from scratch on resume."""

    def __init__(self, initial: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial = initial

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        super().on_train_begin(logs)
        if self.initial:
            self.wait = self.initial["wait"]
            self.best = self.initial["best"]
            self.best_epoch = self.initial["best_epoch"]


class MlflowLogger(keras.callbacks.Callback):
    """Per-epoch losses to MLflow, and the three fixed validation samples every N epochs."""

    def __init__(self, samples: tuple[Any, np.ndarray], figure_every: int) -> None:
        super().__init__()
        self.samples, self.figure_every = samples, figure_every  # (inputs, sr)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)
        if (epoch + 1) % self.figure_every == 0:
            from s2ac.evaluation.figures import sample_grid

            inputs, truth = self.samples
            prediction = np.asarray(self.model.generator(inputs, training=False))
            toa = inputs["toa"] if isinstance(inputs, dict) else inputs
            figure = sample_grid(toa, truth, prediction)
            mlflow.log_figure(figure, f"samples/epoch_{epoch + 1:03d}.png")


def _fixed_samples(
    files: list[str], patch_size: int, geometry: dict[str, Any] | None, count: int = 3
) -> tuple[Any, np.ndarray]:
    """The first ``count`` validation records as ``(inputs, sr)``; inputs as the generator
    takes them (TOA, or ``{"toa", "geometry"}``)."""
    records = []
    for path in files:
        for record in iter_records(path, patch_size):
            records.append(record)
            if len(records) == count:
                break
        if len(records) == count:
            break
    toa, sr = np.stack([r["toa"] for r in records]), np.stack([r["sr"] for r in records])
    if geometry is None:
        return toa, sr
    rows = np.asarray([geometry[r["patch_id"]] for r in records], dtype=np.float32)
    return {"toa": toa, "geometry": rows}, sr


def _log_outputs(
    model: Pix2Pix, history: dict[str, list[float]], example: Any, folder: Path
) -> Any:
    """Loss curves and the generator (pyfunc, signature + input example) to the active run."""
    from s2ac.evaluation.figures import loss_curves
    from s2ac.registry.pyfunc import log_generator

    mlflow.log_figure(loss_curves(history), "loss_curves.png")
    prediction = np.asarray(model.generator(example, training=False))
    return log_generator(folder / "generator.keras", example, prediction)


def train(
    dataset_dir: str | Path, config: Config, *, checkpoint_dir: str | Path | None = None,
    resume: bool = False, callbacks: list[keras.callbacks.Callback] | tuple = (),
    run_options: dict[str, Any] | None = None, log_model: bool = True,
) -> TrainResult:  # fmt: skip
    """Train pix2pix on ``dataset_dir`` (local or gs://) and log the run to MLflow.

    ``callbacks`` run after the built-in ones (tuning adds its pruning callback there);
    ``run_options`` go to ``mlflow.start_run`` (e.g. ``parent_run_id``, ``run_name``, ``tags``);
    ``log_model=False`` skips logging the generator (tuning trials only need their losses).
    """
    root = str(dataset_dir).rstrip("/")
    manifest = check_dataset(root)
    size, train_cfg = int(manifest["patch_size"]), config.train
    folder = Path(checkpoint_dir or train_cfg.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = json.loads((folder / STATE).read_text()) if resume and (folder / STATE).exists() else {}
    if not resume:
        for name in (LAST, STATE):
            (folder / name).unlink(missing_ok=True)
    initial_epoch = int(state.get("epoch", 0))
    steps = _steps_per_epoch(manifest, train_cfg.batch_size)

    configure_precision(train_cfg.mixed_precision)
    keras.utils.set_random_seed(train_cfg.seed)
    with strategy().scope():
        if initial_epoch:
            model: Pix2Pix = keras.saving.load_model(folder / LAST)
            log.info("resuming from %s at epoch %d", folder / LAST, initial_epoch)
        else:
            model = build_pix2pix(train_cfg, size)
    train_files, val_files = list_tfrecords(f"{root}/train"), list_tfrecords(f"{root}/val")
    geometry = _geometry(manifest, root) if train_cfg.generator == "physics" else None
    stream = make_dataset(
        train_files, patch_size=size, batch_size=train_cfg.batch_size, training=True,
        seed=train_cfg.seed, geometry=geometry,
    ).repeat().skip(initial_epoch * steps)  # fmt: skip
    validation = make_dataset(val_files, patch_size=size, batch_size=train_cfg.batch_size,
                              training=False, geometry=geometry)  # fmt: skip
    options = {"run_name": f"train-{config.profile}"} | (run_options or {})
    if state.get("run_id"):
        options.pop("run_name")  # continuing the same run
    with start_run(config.registry, run_id=state.get("run_id"), **options) as run:
        if not initial_epoch:
            mlflow.log_params(
                {f"train.{k}": v for k, v in train_cfg.model_dump().items()}
                | {"data.patch_size": size, "data.digest": manifest["digest"]}
                | {"generator_params": model.generator.count_params()}
            )
            log_dataset(root, manifest, context="training")
        stopper = ResumableEarlyStopping(
            initial=state or None, monitor=MONITOR, patience=train_cfg.early_stopping_patience,
            mode="min",
        )  # fmt: skip
        checkpoint = Checkpoint(folder, stopper, run.info.run_id)
        checkpoint.history = {k: list(v) for k, v in state.get("history", {}).items()}
        logger = MlflowLogger(_fixed_samples(val_files, size, geometry), train_cfg.figure_every)
        model.fit(
            stream, epochs=train_cfg.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
            validation_data=validation, callbacks=[stopper, logger, checkpoint, *callbacks],
            verbose=2,
        )  # fmt: skip
        epochs_done = json.loads((folder / STATE).read_text())["epoch"]
        mlflow.log_metric("epochs_completed", epochs_done)
        if log_model:
            inputs = logger.samples[0]
            example = {k: v[:1] for k, v in inputs.items()} if geometry else inputs[:1]
            _log_outputs(model, checkpoint.history, example, folder)
    return TrainResult(
        checkpoint_dir=folder,
        epochs_completed=epochs_done,
        steps=int(model.g_optimizer.iterations.numpy()),
        stopped_early=epochs_done < train_cfg.epochs,
        history=checkpoint.history,
        run_id=run.info.run_id,
    )
