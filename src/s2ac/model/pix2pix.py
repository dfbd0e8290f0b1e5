"""The pix2pix GAN as a ``keras.Model``: ``fit``, callbacks, early stopping and saving just work.

``train_step``/``test_step`` follow the TensorFlow pix2pix tutorial and are written for the
TensorFlow backend only (``tf.GradientTape``), which is the backend s2ac ships with. Both networks
are updated from one forward pass with two tapes, as in the tutorial: the discriminator judges
``[toa, sr]`` and ``[toa, generated]``, then each net takes one Adam step on its own loss.

Logged per epoch (``val_`` prefixed for validation): ``gen_total``, ``gen_gan``, ``gen_l1``,
``disc``. ``val_gen_l1`` is the validation loss early stopping monitors: it is the radiometric
error, and unlike the GAN terms it does not drift as the two nets chase each other. Keras cannot
tell the direction of a custom metric: ``EarlyStopping(monitor="val_gen_l1", mode="min")``.
There is no latent noise (pix2pix's noise is dropout), hence no ``SeedGenerator`` here: the
builders seed dropout and initialisers from ``train.seed``.

Saving: ``model.save("pix2pix.keras")`` writes everything, optimizer states included, so training
can resume (``keras.saving.load_model`` needs ``s2ac.model.pix2pix`` imported).
:meth:`Pix2Pix.save_models` writes ``generator.keras`` and ``discriminator.keras``, the paper's
checkpoints; the generator file holds only built-in layers and loads without s2ac.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from s2ac.config import TrainConfig
from s2ac.model.discriminator import build_discriminator
from s2ac.model.generator import PAPER_DEPTH, build_generator
from s2ac.model.losses import discriminator_loss, generator_loss

GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"
#: Names of the logged losses, in the order they are reported.
LOSS_NAMES = ("gen_total", "gen_gan", "gen_l1", "disc")


def default_optimizer(learning_rate: float = 2e-4, beta_1: float = 0.5) -> keras.optimizers.Adam:
    """Adam(2e-4, beta_1=0.5): pix2pix's optimizer (beta_1 0.5 damps GAN oscillations)."""
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1)


def save_atomically(write: Callable[[Path], Any], path: Path) -> None:
    """``write(temporary)`` then rename it to ``path``: a reader (or a resumed run) sees the old
    file or the new one, never a half-written one under the final name. The temporary name keeps
    the suffix (Keras checks ``.keras``)."""
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    temporary.unlink(missing_ok=True)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@keras.saving.register_keras_serializable(package="s2ac")
class Pix2Pix(keras.Model):
    """Generator and PatchGAN discriminator trained together; calling it runs the generator.

    Args:
        generator: Maps ``toa`` to surface reflectance (see :func:`build_generator`).
        discriminator: Maps ``[toa, sr]`` to patch logits (see :func:`build_discriminator`).
        **kwargs: Passed to ``keras.Model`` (e.g. ``name``).
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        self.lambda_l1 = 100.0
        self.built = True  # both nets are built Functional models; nothing is left to create

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listed here so fit() and evaluate() reset them at the start of each epoch.
        return list(self.trackers.values())

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        lambda_l1: float = 100.0,
        **kwargs: Any,
    ) -> None:
        """Set the two optimizers and λ; ``kwargs`` (e.g. ``jit_compile``) go to Keras.

        Under a ``mixed_float16`` policy each optimizer is wrapped in a ``LossScaleOptimizer``,
        which ``keras.Model.compile`` would do for a single optimizer.

        Raises:
            ValueError: If ``lambda_l1`` is negative or an optimizer is shared by both nets.
        """
        if lambda_l1 < 0:
            raise ValueError(f"lambda_l1 must be >= 0, got {lambda_l1}")
        if g_optimizer is not None and g_optimizer is d_optimizer:
            raise ValueError("the generator and discriminator need separate optimizer instances")
        super().compile(optimizer=None, **kwargs)
        self.lambda_l1 = float(lambda_l1)
        self.g_optimizer = self._loss_scaled(g_optimizer or default_optimizer())
        self.d_optimizer = self._loss_scaled(d_optimizer or default_optimizer())

    def _loss_scaled(self, optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
        mixed = self.generator.dtype_policy.name == "mixed_float16"
        if mixed and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def call(self, toa: Any, training: bool = False) -> Any:
        """Generator output, so ``predict`` and serving see a plain TOA -> SR model."""
        return self.generator(toa, training=training)

    def _pair_losses(self, data: Any, training: bool) -> tuple[Any, Any, Any, Any]:
        """``(gen_total, gen_gan, gen_l1, disc)`` for a batch ``(toa, sr)``, or
        ``({"toa", "geometry"}, sr)`` for a generator that also takes the geometry (the
        discriminator always judges the pair ``(toa, sr)``)."""
        inputs, sr, _ = keras.utils.unpack_x_y_sample_weight(data)
        if sr is None:
            raise ValueError("Pix2Pix trains on (toa, sr) pairs, got inputs without targets")
        toa = inputs["toa"] if isinstance(inputs, dict) else inputs
        generated = self.generator(inputs, training=training)
        real_logits = self.discriminator([toa, sr], training=training)
        fake_logits = self.discriminator([toa, generated], training=training)
        total, gan, l1 = generator_loss(fake_logits, generated, sr, self.lambda_l1)
        return total, gan, l1, discriminator_loss(real_logits, fake_logits)

    def _report(self, values: tuple[Any, ...]) -> dict[str, Any]:
        for tracker, value in zip(self.trackers.values(), values, strict=True):
            tracker.update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data: Any) -> dict[str, Any]:
        """One Adam step for each net on a batch ``(toa, sr)`` (TensorFlow backend)."""
        # Gradients are summed over replicas (MirroredStrategy): scale each replica's mean loss.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            total, gan, l1, disc = self._pair_losses(data, training=True)
            g_scaled = self.g_optimizer.scale_loss(total / replicas)
            d_scaled = self.d_optimizer.scale_loss(disc / replicas)
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        self.g_optimizer.apply(g_tape.gradient(g_scaled, g_vars), g_vars)
        self.d_optimizer.apply(d_tape.gradient(d_scaled, d_vars), d_vars)
        return self._report((total, gan, l1, disc))

    def test_step(self, data: Any) -> dict[str, Any]:
        """The same four losses with both nets in inference mode (no dropout, BN moving stats)."""
        total, gan, l1, disc = self._pair_losses(data, training=False)
        return self._report((total, gan, l1, disc))

    # --- saving ---------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Pix2Pix:
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        discriminator = keras.saving.deserialize_keras_object(config.pop("discriminator"))
        return cls(generator, discriminator, **config)

    def get_compile_config(self) -> dict[str, Any] | None:
        if not self.compiled:
            return None
        return {
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "lambda_l1": self.lambda_l1,
            "jit_compile": self.jit_compile,
        }

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = dict(config)
        g_optimizer = keras.saving.deserialize_keras_object(config.pop("g_optimizer"))
        d_optimizer = keras.saving.deserialize_keras_object(config.pop("d_optimizer"))
        self.compile(g_optimizer, d_optimizer, **config)
        # Create the slot variables now, so the saved optimizer states have somewhere to go.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def _rng_states(self) -> list[keras.Variable]:
        """Dropout seed-generator states: variables of the nets that are not weights."""
        nets = (self.generator, self.discriminator)
        weights = {id(weight) for net in nets for weight in net.weights}
        return [var for net in nets for var in net.variables if id(var) not in weights]

    def save_own_variables(self, store: Any) -> None:
        # Keras does not save seed-generator states; without them a resumed run would replay the
        # dropout masks of its first steps instead of continuing the original sequence.
        for index, state in enumerate(self._rng_states()):
            store[f"rng_{index}"] = state

    def load_own_variables(self, store: Any) -> None:
        saved = set(store.keys())
        for index, state in enumerate(self._rng_states()):
            if f"rng_{index}" in saved:
                state.assign(store[f"rng_{index}"])

    def save_models(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``generator.keras`` and ``discriminator.keras`` into ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = folder / GENERATOR_FILE, folder / DISCRIMINATOR_FILE
        save_atomically(self.generator.save, paths[0])
        save_atomically(self.discriminator.save, paths[1])
        return paths


def load_models(directory: str | os.PathLike[str]) -> Pix2Pix:
    """Rebuild a :class:`Pix2Pix` from :meth:`Pix2Pix.save_models` files (uncompiled).

    Raises:
        FileNotFoundError: If either file is missing (names it).
    """
    folder = Path(directory)
    paths = folder / GENERATOR_FILE, folder / DISCRIMINATOR_FILE
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (write it with Pix2Pix.save_models)")
    return Pix2Pix(keras.saving.load_model(paths[0]), keras.saving.load_model(paths[1]))


def build_pix2pix(
    config: TrainConfig,
    image_size: int = 256,
    *,
    depth: int = PAPER_DEPTH,
    residual: bool | None = None,
) -> Pix2Pix:
    """Build and compile pix2pix from the training config (``train.generator``: the paper's
    U-Net or the physics-informed generator; the PatchGAN, losses and optimizers are the same).

    Call :func:`s2ac.model.devices.configure_precision` first and, for several GPUs, build inside
    ``s2ac.model.devices.strategy().scope()``.

    Args:
        config: Widths, Adam settings, λ, seed and ``jit_compile``.
        image_size: Patch side; a multiple of ``2**depth``.
        depth: U-Net depth (8 in the paper; smaller only for tests on small patches).
        residual: U-Net: predict a correction added to TOA (see :mod:`generator`); physics:
            add a learned correction to the physical SR (see :mod:`physics_generator`).

    Raises:
        ValueError: If ``image_size`` does not fit ``depth``.
    """
    residual = config.residual if residual is None else residual
    if config.generator == "physics":
        from s2ac.model.physics_generator import build_physics_generator

        generator = build_physics_generator(
            image_size, config.generator_filters, residual=residual,
            prior=config.atmosphere_prior, seed=config.seed,
        )  # fmt: skip
    else:
        generator = build_generator(
            image_size, config.generator_filters, depth=depth, residual=residual, seed=config.seed
        )
    discriminator = build_discriminator(
        image_size, config.discriminator_filters, seed=config.seed + 1000
    )
    model = Pix2Pix(generator, discriminator, name="pix2pix")
    model.compile(
        g_optimizer=default_optimizer(config.learning_rate, config.beta_1),
        d_optimizer=default_optimizer(config.learning_rate, config.beta_1),
        lambda_l1=config.lambda_l1,
        jit_compile=config.jit_compile,
    )
    return model
