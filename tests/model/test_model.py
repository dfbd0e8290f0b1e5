"""Tests of the pix2pix generator, discriminator, losses and training model.

Shapes are checked at the paper's 256 px (construction and one forward pass at 8 filters).
Training tests use 64 px patches with a depth-6 U-Net and 8 filters: the same blocks and code
path, a few seconds on a 2-core CPU.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from s2ac.config import TrainConfig
from s2ac.model.devices import configure_precision, gpu_count, strategy
from s2ac.model.discriminator import build_discriminator, receptive_field
from s2ac.model.generator import build_generator, check_image_size, encoder_filters
from s2ac.model.losses import discriminator_loss, generator_loss, l1_loss
from s2ac.model.pix2pix import (
    DISCRIMINATOR_FILE,
    GENERATOR_FILE,
    Pix2Pix,
    build_pix2pix,
    load_models,
)

# Exact parameter counts (4 bands in and out), computed once from the builders. The 3-band TF
# tutorial reports 54,425,859 and 2,770,433: the 4th band adds 3,073 and 2,048.
GENERATOR_PARAMS = {64: 54_428_932, 16: 3_408_196}
DISCRIMINATOR_PARAMS = {64: 2_772_481, 16: 177_025}

SMALL = {"image_size": 64, "depth": 6}  # training tests: 64 px, bottleneck 1x1 as in the paper
LN2 = math.log(2.0)

pytestmark = pytest.mark.filterwarnings(
    # Keras' TF backend converts tensors with np.array(copy=False), which TF's __array__ does not
    # accept yet under numpy 2: a harmless fallback, repeated on every train_on_batch.
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    keras.utils.set_random_seed(0)


def small_config(**overrides: object) -> TrainConfig:
    return TrainConfig(generator_filters=8, discriminator_filters=8, **overrides)


def fixed_batch(size: int = 64, batch: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """TOA and a plausible SR: darker, with an offset (path radiance) and a little noise."""
    rng = np.random.default_rng(seed)
    toa = rng.uniform(0.0, 0.5, (batch, size, size, 4)).astype(np.float32)
    sr = 0.8 * toa - 0.02 + rng.normal(0.0, 0.01, toa.shape)
    return toa, sr.astype(np.float32)


# --- generator -----------------------------------------------------------------------------------


def test_generator_maps_256_reflectance_to_256_reflectance() -> None:
    generator = build_generator(256, filters=8)
    toa, _ = fixed_batch(256)
    output = generator(toa, training=False)
    assert tuple(output.shape) == (1, 256, 256, 4)
    assert output.dtype == "float32"


def test_generator_widths_follow_pix2pix() -> None:
    assert encoder_filters(64, 8) == [64, 128, 256, 512, 512, 512, 512, 512]


@pytest.mark.parametrize("filters", sorted(GENERATOR_PARAMS))
def test_parameter_counts(filters: int) -> None:
    assert build_generator(256, filters).count_params() == GENERATOR_PARAMS[filters]
    assert build_discriminator(256, filters).count_params() == DISCRIMINATOR_PARAMS[filters]


@pytest.mark.parametrize(("size", "depth"), [(256, 8), (512, 8), (1024, 8), (64, 6)])
def test_image_sizes_that_fit_the_depth_are_accepted(size: int, depth: int) -> None:
    check_image_size(size, depth)


@pytest.mark.parametrize(("size", "depth"), [(128, 8), (300, 8), (0, 8), (64, 0)])
def test_image_sizes_that_do_not_fit_are_rejected(size: int, depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        check_image_size(size, depth)


def test_generator_rejects_patch_not_multiple_of_256() -> None:
    with pytest.raises(ValueError, match=r"not a multiple of 2\*\*depth = 256"):
        build_generator(image_size=128, filters=8)


def test_untrained_residual_generator_is_the_identity() -> None:
    generator = build_generator(filters=8, residual=True, **SMALL)
    toa, _ = fixed_batch()
    np.testing.assert_array_equal(generator(toa, training=False), toa)


# --- discriminator -------------------------------------------------------------------------------


def test_discriminator_outputs_30x30_patch_logits() -> None:
    discriminator = build_discriminator(256, filters=8)
    toa, sr = fixed_batch(256)
    logits = discriminator([toa, sr], training=False)
    assert tuple(logits.shape) == (1, 30, 30, 1)
    assert logits.dtype == "float32"


def test_receptive_field_of_the_patchgan_is_70() -> None:
    assert receptive_field(build_discriminator(256, filters=8)) == 70


def test_receptive_field_of_simple_chains() -> None:
    three_by_three = [layers.Conv2D(1, 3), layers.Conv2D(1, 3)]
    assert receptive_field(three_by_three) == 5
    assert receptive_field([layers.Conv2D(1, 3, strides=2), layers.MaxPooling2D(2)]) == 5
    assert receptive_field([layers.Conv2D(1, 3, dilation_rate=2)]) == 5


def test_receptive_field_refuses_upsampling() -> None:
    with pytest.raises(ValueError, match="upsamples"):
        receptive_field([layers.Conv2DTranspose(1, 4, strides=2)])


def test_discriminator_rejects_tiny_patches() -> None:
    with pytest.raises(ValueError, match="too small"):
        build_discriminator(16)


# --- losses --------------------------------------------------------------------------------------


def test_losses_at_chance_are_ln2() -> None:
    zeros = np.zeros((2, 30, 30, 1), np.float32)
    image = np.full((2, 8, 8, 4), 0.3, np.float32)
    total, gan, l1 = generator_loss(zeros, image, image, lambda_l1=100.0)
    assert float(gan) == pytest.approx(LN2, rel=1e-6)
    assert float(l1) == 0.0
    assert float(total) == pytest.approx(LN2, rel=1e-6)
    assert float(discriminator_loss(zeros, zeros)) == pytest.approx(LN2, rel=1e-6)


def test_generator_loss_is_gan_plus_lambda_times_l1() -> None:
    logits = np.full((1, 30, 30, 1), 2.0, np.float32)
    target = np.full((1, 8, 8, 4), 0.2, np.float32)
    generated = target + 0.05
    total, gan, l1 = generator_loss(logits, generated, target, lambda_l1=10.0)
    assert float(l1) == pytest.approx(0.05, rel=1e-5)
    assert float(gan) == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-5)
    assert float(total) == pytest.approx(float(gan) + 10.0 * 0.05, rel=1e-5)


def test_confident_correct_discriminator_has_small_loss() -> None:
    real = np.full((1, 30, 30, 1), 10.0, np.float32)
    assert float(discriminator_loss(real, -real)) < 1e-4
    assert float(discriminator_loss(-real, real)) > 9.0


def test_losses_are_float32_for_float16_inputs() -> None:
    half = np.full((1, 4, 4, 4), 0.25, np.float16)
    assert l1_loss(half, half * 0).dtype == "float32"
    assert discriminator_loss(half, half).dtype == "float32"


# --- Pix2Pix -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("residual", [False, True], ids=["direct", "residual"])
def test_train_steps_lower_l1_on_a_fixed_batch(residual: bool) -> None:
    # lr 1e-3 instead of 2e-4: we test that the step descends, in few steps.
    model = build_pix2pix(small_config(learning_rate=1e-3), residual=residual, **SMALL)
    toa, sr = fixed_batch()
    history = [model.train_on_batch(toa, sr, return_dict=True) for _ in range(30)]
    l1 = [step["gen_l1"] for step in history]
    assert l1[-1] < 0.7 * l1[0]
    assert all(np.isfinite(list(step.values())).all() for step in history)


@pytest.mark.slow
def test_fit_reports_losses_for_training_and_validation() -> None:
    model = build_pix2pix(small_config(), **SMALL)
    toa, sr = fixed_batch(batch=4)
    train = tf.data.Dataset.from_tensor_slices((toa, sr)).batch(2)
    validation = tf.data.Dataset.from_tensor_slices(fixed_batch(batch=2, seed=1)).batch(2)
    # mode="min": Keras cannot infer the direction of a custom metric and raises without it.
    stop = keras.callbacks.EarlyStopping(monitor="val_gen_l1", mode="min", patience=5)
    history = model.fit(
        train, validation_data=validation, epochs=2, callbacks=[stop], shuffle=False, verbose=0
    )
    for name in ("gen_total", "gen_gan", "gen_l1", "disc"):
        assert len(history.history[name]) == 2
        assert len(history.history[f"val_{name}"]) == 2
    assert model.predict(toa, verbose=0).shape == (4, 64, 64, 4)


def test_build_pix2pix_takes_settings_from_config() -> None:
    config = small_config(lambda_l1=7.0, learning_rate=3e-4, beta_1=0.4)
    model = build_pix2pix(config, **SMALL)
    assert model.lambda_l1 == 7.0
    assert model.g_optimizer is not model.d_optimizer
    assert float(model.g_optimizer.learning_rate) == pytest.approx(3e-4)
    assert model.d_optimizer.beta_1 == pytest.approx(0.4)
    assert model.jit_compile is False
    assert model.generator.output.shape[1:] == (64, 64, 4)


def test_compile_rejects_bad_arguments() -> None:
    model = Pix2Pix(build_generator(filters=8, **SMALL), build_discriminator(64, 8))
    shared = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="separate optimizer"):
        model.compile(shared, shared)
    with pytest.raises(ValueError, match="lambda_l1"):
        model.compile(lambda_l1=-1.0)


@pytest.mark.slow
def test_save_models_round_trip(tmp_path) -> None:
    model = build_pix2pix(small_config(), **SMALL)
    toa, sr = fixed_batch()
    model.train_on_batch(toa, sr)  # move BatchNorm statistics away from their initial values
    paths = model.save_models(tmp_path / "checkpoint")
    assert [path.name for path in paths] == [GENERATOR_FILE, DISCRIMINATOR_FILE]
    loaded = load_models(tmp_path / "checkpoint")
    np.testing.assert_array_equal(loaded(toa, training=False), model(toa, training=False))
    np.testing.assert_array_equal(
        loaded.discriminator([toa, sr], training=False),
        model.discriminator([toa, sr], training=False),
    )


@pytest.mark.slow
def test_whole_model_round_trip_keeps_optimizer_state(tmp_path) -> None:
    model = build_pix2pix(small_config(lambda_l1=50.0), **SMALL)
    toa, sr = fixed_batch()
    for _ in range(2):
        model.train_on_batch(toa, sr)
    model.save(tmp_path / "pix2pix.keras")
    loaded = keras.saving.load_model(tmp_path / "pix2pix.keras")
    assert isinstance(loaded, Pix2Pix)
    assert loaded.lambda_l1 == 50.0
    assert int(loaded.g_optimizer.iterations) == 2
    np.testing.assert_array_equal(loaded.predict(toa, verbose=0), model.predict(toa, verbose=0))
    # Dropout continues its random sequence (Keras alone would restart it): exact resume.
    np.testing.assert_array_equal(loaded(toa, training=True), model(toa, training=True))
    loaded.train_on_batch(toa, sr)


def test_load_models_names_the_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=GENERATOR_FILE):
        load_models(tmp_path)


# --- devices -------------------------------------------------------------------------------------


@pytest.fixture
def _restore_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.usefixtures("_restore_policy")
def test_precision_modes() -> None:
    assert configure_precision("off") == "float32"
    expected = "mixed_float16" if gpu_count() else "float32"
    assert configure_precision("auto") == expected
    with pytest.raises(ValueError, match="precision mode"):
        configure_precision("bfloat16")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.usefixtures("_restore_policy")
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_outputs_and_losses_float32(policy: str) -> None:
    assert configure_precision(policy) == policy  # type: ignore[arg-type]
    model = build_pix2pix(small_config(), image_size=32, depth=5)
    # float16 needs loss scaling against underflow; bfloat16 has float32's exponent range
    scaled = isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    assert model.generator.output.dtype == "float32"
    assert model.discriminator.output.dtype == "float32"
    toa, sr = fixed_batch(32, batch=2)
    losses = model.train_on_batch(toa, sr, return_dict=True)
    assert np.isfinite(list(losses.values())).all()


def test_strategy_is_the_default_without_several_gpus() -> None:
    if gpu_count() > 1:
        pytest.skip("several GPUs: strategy() is a MirroredStrategy")
    assert strategy().num_replicas_in_sync == 1
