"""Training end to end on a tiny embedded dataset: MLflow run, checkpoints, exact resume."""

import json
from pathlib import Path

import keras
import mlflow
import mlflow.pyfunc
import numpy as np
import pytest

from s2ac.config import load_config
from s2ac.errors import InputDataError
from s2ac.training.train import LAST, TrainResult, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tiny_dataset: Path) -> Path:
    return tiny_dataset


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    """One MLflow database for the module (a new SQLite store costs its schema migrations): the
    tests find their runs by id, never by searching."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _config(tracking: str, epochs: int):
    return load_config(
        "small",
        overrides=[
            f"train.epochs={epochs}",
            "train.generator_filters=4",
            "train.discriminator_filters=4",
            "train.early_stopping_patience=10",
            "train.figure_every=2",
            f"registry.tracking_uri={tracking}",
        ],
    )


@pytest.fixture(scope="module")
def uninterrupted(dataset: Path, tracking: str, tmp_path_factory) -> tuple[Path, TrainResult]:
    """One 3-epoch run to its end, made once: the MLflow test reads its run, and every killed run
    must resume to its weights."""
    folder = tmp_path_factory.mktemp("uninterrupted") / "full"
    return folder, train(dataset, _config(tracking, 3), checkpoint_dir=folder)


class SimulatedKill(RuntimeError):
    """Stands for the process being killed right after a checkpoint was written."""


def _weights(folder: Path) -> list[np.ndarray]:
    model = keras.saving.load_model(folder / LAST)
    return [np.asarray(v) for v in model.generator.weights + model.g_optimizer.variables]


def test_train_logs_to_mlflow_and_resumes_exactly(
    dataset: Path, tracking: str, tmp_path: Path, monkeypatch, uninterrupted
):
    full_dir, full = uninterrupted  # the 3-epoch run the kill tests also resume to
    assert full.epochs_completed == 3 and not full.stopped_early
    assert (full_dir / "best" / "generator.keras").is_file()
    steps_per_epoch = 5 // 2  # 8 patches: 5 train (drop remainder), 1 val, 2 test
    assert full.steps == 3 * steps_per_epoch
    mlflow.set_tracking_uri(tracking)
    run = mlflow.get_run(full.run_id)
    assert {"gen_l1", "disc", "gen_gan", "gen_total", "val_gen_l1"} <= set(run.data.metrics)
    assert run.data.params["train.batch_size"] == "2"
    client = mlflow.MlflowClient()
    history = client.get_metric_history(full.run_id, "gen_l1")
    assert [m.step for m in history] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(full.run_id, "samples")}
    assert artifacts == {"samples/epoch_002.png"}
    assert "loss_curves.png" in {a.path for a in client.list_artifacts(full.run_id)}
    logged = mlflow.pyfunc.load_model(f"runs:/{full.run_id}/generator")
    example = np.zeros((1, 256, 256, 4), np.float32)
    assert logged.predict(example).shape == (1, 256, 256, 4)
    assert logged.metadata.get_input_schema().inputs[0].shape == (-1, -1, -1, 4)  # any size
    assert logged.predict(np.zeros((1, 100, 300, 4), np.float32)).shape == (1, 100, 300, 4)
    assert run.inputs.dataset_inputs[0].dataset.digest

    # Kill a second run after its second epoch, then resume it.
    import s2ac.training.train as training

    original = training.Checkpoint
    monkeypatch.setattr(
        training, "Checkpoint", lambda *a, **k: _with_kill(original(*a, **k), epoch=2)
    )
    with pytest.raises(SimulatedKill):
        train(dataset, _config(tracking, 3), checkpoint_dir=tmp_path / "killed")
    monkeypatch.setattr(training, "Checkpoint", original)
    resumed = train(dataset, _config(tracking, 3), checkpoint_dir=tmp_path / "killed", resume=True)
    assert resumed.epochs_completed == 3 and resumed.steps == full.steps
    assert resumed.run_id != full.run_id
    for a, b in zip(_weights(full_dir), _weights(tmp_path / "killed"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _with_kill(checkpoint, epoch: int):
    """Checkpoint that writes its files and then dies, like a process killed after an epoch."""
    save = checkpoint.on_epoch_end

    def on_epoch_end(index, logs=None):
        save(index, logs)
        if index + 1 == epoch:
            raise SimulatedKill(f"after epoch {epoch}")

    checkpoint.on_epoch_end = on_epoch_end
    return checkpoint


def test_missing_dataset_fails_before_training(tracking: str, tmp_path: Path):
    with pytest.raises(InputDataError, match="no dataset manifest"):
        train(tmp_path / "nothing", _config(tracking, 1), checkpoint_dir=tmp_path / "c")
    assert not (tmp_path / "c" / LAST).exists()


def test_physics_generator_trains_logs_and_evaluates_with_geometry(
    dataset: Path, tracking: str, tmp_path: Path
):
    """train.generator=physics: trained on ({toa, geometry}, sr) batches, logged as a pyfunc
    whose signature takes the geometry, and evaluated with each sample's geometry from the
    manifest (checkpoint and logged model give the same scores)."""
    from s2ac.config import with_changes
    from s2ac.data.input import manifest_geometry
    from s2ac.data.tfrecord import iter_records, list_tfrecords
    from s2ac.evaluation.evaluate import evaluate, load_generator

    changes = {"train.generator": "physics", "evaluate.figures": False,
               "evaluate.baselines": ["identity"]}  # fmt: skip
    config = with_changes(_config(tracking, 1), changes)
    result = train(dataset, config, checkpoint_dir=tmp_path / "physics")
    run = mlflow.get_run(result.run_id)
    assert run.data.params["train.generator"] == "physics"
    logged = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/generator")
    assert set(logged.metadata.get_input_schema().input_names()) == {"toa", "geometry"}
    local = evaluate(dataset, tmp_path / "physics" / "best", config.evaluate, tmp_path / "e1")
    for split in ("test", "ood"):
        assert np.isfinite(local.comparison[split].loc["rmse", "pix2pix"])
    # the logged pyfunc and the checkpoint predict the same, each sample with its geometry
    geometry = manifest_geometry(json.loads((dataset / "manifest.json").read_text()))
    records = list(iter_records(list_tfrecords(dataset / "test")[0], 256))[:2]
    toa, ids = np.stack([r["toa"] for r in records]), [r["patch_id"] for r in records]
    logged_sr = load_generator(f"runs:/{result.run_id}/generator", geometry)(toa, ids)
    checkpoint_sr = load_generator(tmp_path / "physics" / "best", geometry)(toa, ids)
    np.testing.assert_allclose(logged_sr, checkpoint_sr, atol=1e-5)
    # without the geometry the physics generator refuses, naming the patch
    method = load_generator(tmp_path / "physics" / "best", geometry={})
    with pytest.raises(InputDataError, match="needs each sample's geometry"):
        method(np.zeros((1, 256, 256, 4), "f4"), ["nowhere"])


# Mid-write of the full model, at the commit point, and after it (a networks' file, written
# the same way, was a fourth case: same code path, 50 s of CI).
@pytest.mark.parametrize("dies_writing", ["last-0002.keras", "state.json", "last.keras"])
def test_a_kill_while_saving_leaves_a_state_that_resumes_to_the_same_end(
    dataset: Path, tracking: str, tmp_path: Path, monkeypatch, dies_writing: str, uninterrupted
):
    """Killed in epoch 2's saving, half-way through writing a file (a partial temporary left
    behind): the resumed run ends where an uninterrupted one does. ``state.json`` names the
    checkpoint it commits, so a kill between the two renames cannot mix epochs."""
    import s2ac.model.pix2pix as pix2pix
    import s2ac.training.train as training

    full_dir, full = uninterrupted
    real = training.save_atomically
    states = []

    def dying(write, path: Path) -> None:
        if path.name == "state.json":
            states.append(path)
        epoch_2 = len(states) == (2 if dies_writing in ("state.json", "last.keras") else 1)
        if path.name == dies_writing and epoch_2:
            path.with_name(f".{path.stem}.tmp-1{path.suffix}").write_bytes(b"half a file")
            raise SimulatedKill(f"while writing {path.name}")
        real(write, path)

    for module in (training, pix2pix):
        monkeypatch.setattr(module, "save_atomically", dying)
    with pytest.raises(SimulatedKill):
        train(dataset, _config(tracking, 3), checkpoint_dir=tmp_path / "killed")
    for module in (training, pix2pix):
        monkeypatch.setattr(module, "save_atomically", real)
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert state["epoch"] == (2 if dies_writing == "last.keras" else 1)
    assert (tmp_path / "killed" / state["checkpoint"]).is_file()
    resumed = train(dataset, _config(tracking, 3), checkpoint_dir=tmp_path / "killed", resume=True)
    assert resumed.epochs_completed == 3 and resumed.steps == full.steps
    for a, b in zip(_weights(full_dir), _weights(tmp_path / "killed"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "killed").glob("last*.keras")) == [
        "last-0003.keras", "last.keras"]  # fmt: skip


def test_a_non_finite_loss_stops_training_without_saving_it(
    dataset: Path, tracking: str, tmp_path: Path
):
    """λ so large that the generator loss overflows float32: a one-line error saying where,
    and no checkpoint of the diverged epoch."""
    from s2ac.errors import TrainingDivergedError

    config = load_config("small", overrides=[
        "train.epochs=2", "train.generator_filters=4", "train.discriminator_filters=4",
        "train.lambda_l1=1e39", f"registry.tracking_uri={tracking}",
    ])  # fmt: skip
    with pytest.raises(TrainingDivergedError, match=r"non-finite at epoch 1, batch 1 .*gen_total"):
        train(dataset, config, checkpoint_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "state.json").exists()
    assert not list((tmp_path / "c").glob("last*.keras"))


def test_a_nan_record_is_an_error_naming_its_patch(dataset: Path, tracking: str, tmp_path: Path):
    """A NaN pixel in a train record (manifest re-hashed, so only the content check can catch
    it): an input error naming the patch, not NaN losses."""
    import hashlib
    import shutil

    from s2ac.data.integrity import digest_of
    from s2ac.data.tfrecord import iter_records, write_tfrecord

    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    shard = sorted((copy / "train").glob("*.tfrecord*"))[0]
    records = list(iter_records(shard, 256))
    records[0]["toa"] = records[0]["toa"].copy()
    records[0]["toa"][10, 10, 1] = np.nan
    write_tfrecord(shard, [(r["toa"], r["sr"], r["patch_id"]) for r in records])
    manifest = json.loads((copy / "manifest.json").read_text())
    name = f"train/{shard.name}"
    manifest["files"][name] = hashlib.sha256(shard.read_bytes()).hexdigest()
    manifest["digest"] = digest_of(manifest["files"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputDataError, match=f"NaN or inf.*{records[0]['patch_id']}"):
        train(copy, _config(tracking, 1), checkpoint_dir=tmp_path / "c")


def test_a_patch_size_the_network_cannot_take_is_a_config_error():
    from s2ac.errors import ConfigError
    from s2ac.training.train import _check_patch_size

    with pytest.raises(
        ConfigError, match=r"train.generator=unet needs patches that are a multiple of 256"
    ):
        _check_patch_size(64, "unet", "data/")
    _check_patch_size(64, "physics", "data/")
    with pytest.raises(ConfigError, match="multiple of 8 px"):
        _check_patch_size(60, "physics", "data/")


def test_losses_survive_a_lost_tracking_server(monkeypatch):
    """MLflow down after epoch 1: its losses are kept and sent, in order, once it is back."""
    import s2ac.training.train as training

    sent, down = [], [True]

    def log_metrics(metrics, step):
        if down[0]:
            raise ConnectionError("server gone")
        sent.append((step, metrics["gen_l1"]))

    monkeypatch.setattr(training.mlflow, "log_metrics", log_metrics)
    logger = training.MlflowLogger((np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4))), 1000)
    logger.on_epoch_end(0, {"gen_l1": 0.3})
    assert logger.unlogged == [1] and sent == []
    down[0] = False
    logger.on_epoch_end(1, {"gen_l1": 0.2})
    assert sent == [(1, 0.3), (2, 0.2)] and logger.unlogged == []


def test_a_record_of_another_size_mid_shard_is_an_input_error(
    dataset: Path, tracking: str, tmp_path: Path
):
    """check_dataset reads each split's first record; a later one of another size used to crash
    training with a traceback."""
    import hashlib
    import shutil

    from s2ac.data.integrity import digest_of
    from s2ac.data.tfrecord import iter_records

    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    shard = sorted((copy / "train").glob("*.tfrecord*"))[0]
    import tensorflow as tf

    from s2ac.data.tfrecord import serialize_pair

    records = [serialize_pair(r["toa"], r["sr"], r["patch_id"]) for r in iter_records(shard, 256)]
    small = np.zeros((128, 128, 4), np.float32) + 0.1
    records.insert(1, serialize_pair(small, small, "odd-one"))
    with tf.io.TFRecordWriter(str(shard), options="GZIP") as writer:  # by hand: the project's
        for record in records:  # writer refuses mixed sizes
            writer.write(record)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][f"train/{shard.name}"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    manifest["digest"] = digest_of(manifest["files"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputDataError, match="a record the input pipeline cannot read"):
        train(copy, _config(tracking, 2), checkpoint_dir=tmp_path / "c")
