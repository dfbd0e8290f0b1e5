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
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import tensorflow as tf

from s2ac.config import Config
from s2ac.console import log
from s2ac.data.input import NON_FINITE, make_dataset, manifest_geometry
from s2ac.data.integrity import read_manifest, verify_dataset
from s2ac.data.tfrecord import check_tfrecord, iter_records, list_tfrecords
from s2ac.errors import ConfigError, InputDataError, TrainingDivergedError
from s2ac.io.storage import exists, localize_files
from s2ac.model.devices import configure_precision, strategy
from s2ac.model.pix2pix import Pix2Pix, build_pix2pix, save_atomically
from s2ac.registry.tracking import check_server, log_dataset, start_run

LAST = "last.keras"
STATE = "state.json"
MONITOR = "val_gen_l1"
#: TensorFlow's words for a record that does not parse (wrong size, missing band, damaged file).
RECORD_ERRORS = ("Feature:", "Key: ", "corrupted record", "Name: <unknown>")


@dataclass(frozen=True)
class TrainResult:
    checkpoint_dir: Path
    epochs_completed: int
    steps: int
    stopped_early: bool
    history: dict[str, list[float]]
    run_id: str | None


def check_dataset(dataset_dir: str) -> dict[str, Any]:
    """Fail before any training when the manifest, a split, a shard's sha256 or the record schema
    is wrong (see :mod:`s2ac.data.integrity`)."""
    root = dataset_dir.rstrip("/")
    if not exists(f"{root}/manifest.json"):
        raise InputDataError(
            f"{root}/manifest.json", "no dataset manifest", "build one with `s2ac data synth`"
        )
    manifest = verify_dataset(root, ("train", "val"), read_manifest(root))
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


def _check_patch_size(size: int, generator: str, root: str) -> None:
    """The network must fit the dataset's patches: a one-line error naming the keys, before
    anything is built (was a ValueError traceback from the U-Net builder)."""
    from s2ac.model.generator import PAPER_DEPTH
    from s2ac.model.physics_generator import GRID

    step = 2**PAPER_DEPTH if generator == "unet" else GRID
    if size % step:
        why = (f"the paper's U-Net halves it {PAPER_DEPTH} times" if generator == "unet"
               else f"the atmosphere is estimated every {GRID} px")  # fmt: skip
        raise ConfigError(
            f"train.generator={generator} needs patches that are a multiple of {step} px ({why}); "
            f"the dataset {root} has {size} px patches: rebuild it with data.patch_size=256"
        )


def _steps_per_epoch(manifest: dict[str, Any], batch_size: int) -> int:
    n_train = int(manifest["split"]["counts"]["train"])
    if n_train < batch_size:
        raise InputDataError("train split", f"{n_train} patches, fewer than batch {batch_size}")
    return n_train // batch_size


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no copy of a large file), or a copy where the file system has none."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _checkpoint_name(epoch: int) -> str:
    return f"last-{epoch:04d}.keras"


class Checkpoint(keras.callbacks.Callback):
    """Every epoch: the full model (G, D, optimizers), the networks of that epoch and, in
    ``best/``, those of the epoch with the lowest validation loss; then ``state.json``.

    Each file is written under a temporary name and renamed, and the full model goes to a new
    ``last-NNNN.keras`` that ``state.json`` names: renaming ``state.json`` is the one commit
    point, so a kill at any instant leaves the previous or the new state, never a mix (a
    half-written file under its final name, or a ``last.keras`` one epoch ahead of the state).
    After the commit ``last.keras`` becomes that checkpoint and older ones are removed.
    An epoch whose losses are not finite (see :class:`StopOnNonFiniteLoss`) is never saved."""

    def __init__(
        self, directory: Path, stopper: keras.callbacks.EarlyStopping, run_id: str | None,
        guard: StopOnNonFiniteLoss | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.directory, self.stopper, self.run_id, self.guard = directory, stopper, run_id, guard
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.guard is not None and self.guard.where:
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        name = _checkpoint_name(epoch + 1)
        save_atomically(self.model.save, self.directory / name)
        self.model.save_models(self.directory)  # generator.keras, discriminator.keras
        if self.stopper.best_epoch == epoch:  # the epoch with the lowest validation L1 so far
            self.model.save_models(self.directory / "best")
        state = {
            "epoch": epoch + 1,
            "checkpoint": name,
            "wait": self.stopper.wait,
            "best": float(self.stopper.best),
            "best_epoch": self.stopper.best_epoch,
            "run_id": self.run_id,
            "history": self.history,
        }
        save_atomically(lambda path: path.write_text(json.dumps(state)), self.directory / STATE)
        save_atomically(lambda path: _link_or_copy(self.directory / name, path),
                        self.directory / LAST)  # fmt: skip
        for old in self.directory.glob("last-*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first batch whose losses are NaN or infinite, and says where: a
    diverged model must not be saved, logged or promoted (``TerminateOnNaN`` with a record)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch, self.where = 0, ""

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        bad = {k: float(v) for k, v in (logs or {}).items() if not np.isfinite(float(v))}
        if bad and not self.where:
            values = ", ".join(f"{k}={v}" for k, v in bad.items())
            self.where = f"epoch {self.epoch + 1}, batch {batch + 1} ({values})"
            self.model.stop_training = True


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
    """Per-epoch losses to MLflow, and the three fixed validation samples every N epochs.

    Runs after the checkpoint. If the server is lost, the epoch's losses are kept and sent again
    after the next epoch (in step order); training goes on, and :attr:`unlogged` says what never
    reached MLflow (the training log then says so too)."""

    def __init__(self, samples: tuple[Any, np.ndarray], figure_every: int) -> None:
        super().__init__()
        self.samples, self.figure_every = samples, figure_every  # (inputs, sr)
        self.pending: list[tuple[int, dict[str, float]]] = []

    @property
    def unlogged(self) -> list[int]:
        """Epochs (1-based) whose losses have not reached MLflow."""
        return [step for step, _ in self.pending]

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.pending.append((epoch + 1, {k: float(v) for k, v in (logs or {}).items()}))
        try:
            while self.pending:
                step, metrics = self.pending[0]
                mlflow.log_metrics(metrics, step=step)
                self.pending.pop(0)
            if (epoch + 1) % self.figure_every == 0:
                self._log_samples(epoch)
        except Exception as exc:  # the server is gone: the checkpoint is already on disk
            log.warning("MLflow logging failed after epoch %d (%s): losses of epochs %s kept, "
                        "sent again after the next epoch", epoch + 1, type(exc).__name__,
                        self.unlogged)  # fmt: skip

    def _log_samples(self, epoch: int) -> None:
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
    return log_generator(folder / "generator.keras", example)


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
    check_server(config.registry)  # seconds, not minutes of retries after the model is built
    # MLflow's client retries a lost server 7 times with doubling waits (minutes per call); a
    # training run keeps its losses and retries itself (MlflowLogger), so bound each call.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(config.registry.connect_attempts))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    root = str(dataset_dir).rstrip("/")
    manifest = check_dataset(root)
    size, train_cfg = int(manifest["patch_size"]), config.train
    folder = Path(checkpoint_dir or train_cfg.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = json.loads((folder / STATE).read_text()) if resume and (folder / STATE).exists() else {}
    if not resume:
        for path in [folder / LAST, folder / STATE, *folder.glob("last-*.keras")]:
            path.unlink(missing_ok=True)
    initial_epoch = int(state.get("epoch", 0))
    steps = _steps_per_epoch(manifest, train_cfg.batch_size)
    _check_patch_size(size, train_cfg.generator, root)

    configure_precision(train_cfg.mixed_precision)
    keras.utils.set_random_seed(train_cfg.seed)
    with strategy().scope():
        if initial_epoch:
            # state.json names the checkpoint it was committed with (last.keras: older states)
            saved = folder / state.get("checkpoint", LAST)
            model: Pix2Pix = keras.saving.load_model(saved)
            log.info("resuming from %s at epoch %d", saved, initial_epoch)
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
        guard = StopOnNonFiniteLoss()
        checkpoint = Checkpoint(folder, stopper, run.info.run_id, guard)
        checkpoint.history = {k: list(v) for k, v in state.get("history", {}).items()}
        logger = MlflowLogger(_fixed_samples(val_files, size, geometry), train_cfg.figure_every)
        # The checkpoint before the MLflow logging: a lost server must not lose the epoch.
        try:
            model.fit(
                stream, epochs=train_cfg.epochs, initial_epoch=initial_epoch,
                steps_per_epoch=steps, validation_data=validation,
                callbacks=[guard, stopper, checkpoint, logger, *callbacks], verbose=2,
            )  # fmt: skip
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as exc:
            message = exc.message or ""
            if NON_FINITE in message:
                # TensorFlow's message: "assertion failed: [<NON_FINITE>] [<patch id>]"
                found = re.search(r"\] \[([^\]]*)\]", message.split(NON_FINITE, 1)[1])
                problem = f"{NON_FINITE} {found.group(1) if found else '?'!r}"
            elif any(mark in message for mark in RECORD_ERRORS):  # a record off the schema
                problem = f"a record the input pipeline cannot read: {message.splitlines()[0]}"
            else:
                raise
            raise InputDataError(
                f"{root} (train or val)", problem,
                f"the data is broken: `s2ac data validate {root}`, then rebuild it",
            ) from None  # fmt: skip
        if guard.where:
            saved = folder / STATE
            kept = json.loads(saved.read_text())["epoch"] if saved.exists() else 0
            raise TrainingDivergedError(
                f"training stopped: a loss became non-finite at {guard.where}; nothing from that "
                f"epoch was saved (last good checkpoint: epoch {kept} in {folder}). Look at the "
                f"data first (`s2ac data validate {root}`: NaN or DN-scaled patches), then "
                "lower train.learning_rate or train.lambda_l1"
            )
        epochs_done = json.loads((folder / STATE).read_text())["epoch"]
        if logger.unlogged:
            log.warning("MLflow never received the losses of epochs %s (server unreachable); "
                        "they are in %s (history)", logger.unlogged, folder / STATE)  # fmt: skip
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
