"""A physics-informed generator: the network estimates the atmosphere, 6S inverts it.

The paper's U-Net maps TOA to SR with nothing to keep it physical; trained on narrow data it
learns the scene. This generator keeps the U-Net but changes what it predicts: per pixel, the
aerosol optical thickness at 550 nm, the water-vapour column and the aerosol-model weights,
from the TOA image and the acquisition geometry. The committed look-up table's inverse, in
TensorFlow ops (:class:`s2ac.physics.tf_lut.TFLut`), turns TOA into SR under that atmosphere,
so every output is a physically possible correction; an optional small learned residual is added
on top.

Untrained, its head outputs the fixed climatology of the ``6s`` baseline
(:data:`s2ac.physics.corrections.CLIMATOLOGY`) everywhere: the network starts from the physics
baseline and learns only how the atmosphere departs from it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from s2ac.bands import N_BANDS
from s2ac.model.generator import PAPER_DEPTH, check_image_size, unet_trunk
from s2ac.physics.corrections import CLIMATOLOGY
from s2ac.physics.lut import Atmosphere, Lut
from s2ac.physics.tf_lut import GEOMETRY, TFLut

#: Logit that makes one aerosol model's softmax weight 1 to float32 precision.
_CERTAIN = 40.0


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


@keras.saving.register_keras_serializable(package="s2ac")
class GeometryMap(layers.Layer):
    """Per-sample geometry ``(b, 6)`` as constant feature maps ``(b, s, s, 5)`` for the U-Net:
    cosines of the sun and view zenith and of the folded relative azimuth, elevation / 2 km and
    ozone / 0.45 cm-atm (all about 0-1)."""

    def __init__(self, image_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_size = image_size

    def call(self, geometry: Any) -> Any:
        degrees = np.pi / 180.0
        raa = geometry[:, 2]
        raa = ops.where(raa > 180.0, 360.0 - raa, raa)
        features = ops.stack(
            [ops.cos(geometry[:, 0] * degrees), ops.cos(geometry[:, 1] * degrees),
             ops.cos(raa * degrees), geometry[:, 3] / 2.0, geometry[:, 4] / 0.45],
            axis=-1,
        )  # fmt: skip
        return ops.tile(features[:, None, None, :], (1, self.image_size, self.image_size, 1))

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"image_size": self.image_size}


@keras.saving.register_keras_serializable(package="s2ac")
class Bounded(layers.Layer):
    """Channel ``channel`` of the head squashed into ``[low, high]`` (a sigmoid): the estimate
    can never leave the look-up table's domain."""

    def __init__(self, channel: int, low: float, high: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel, self.low, self.high = channel, float(low), float(high)

    def call(self, z: Any) -> Any:
        return self.low + (self.high - self.low) * ops.sigmoid(z[..., self.channel])

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"channel": self.channel, "low": self.low,
                                       "high": self.high}  # fmt: skip


@keras.saving.register_keras_serializable(package="s2ac")
class AtmosphereInverse(layers.Layer):
    """``[toa, aot550, water_vapour, model_weights, geometry]`` -> SR through the look-up table's
    exact inverse (differentiable in the atmosphere).

    The atmosphere varies over kilometres, not pixels: the coefficients are computed on a grid
    ``coarse`` times coarser (the estimates averaged over each cell) and resized bilinearly to
    the image, which cuts the table work by ``coarse**2`` (measured: an 8x coarser grid makes a
    training step about as fast as the U-Net's). ``coarse=1`` computes them per pixel. A uniform
    atmosphere gives exactly the per-pixel result."""

    def __init__(self, lut_path: str | None = None, coarse: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lut_path, self.coarse = lut_path, int(coarse)
        self.table = TFLut(Lut.load(lut_path))

    def call(self, inputs: list[Any]) -> Any:
        toa, aot, water_vapour, weights, geometry = inputs
        if self.coarse == 1:
            return self.table.inverse(toa, aot, water_vapour, weights, geometry)
        k = self.coarse

        def pool(x: Any) -> Any:
            return ops.average_pool(x, k, strides=k, padding="same")

        coefficients = self.table.coefficients(
            pool(aot[..., None])[..., 0], pool(water_vapour[..., None])[..., 0], pool(weights),
            geometry,
        )  # fmt: skip
        size = ops.shape(toa)[1:3]
        full = {name: ops.image.resize(value, size, interpolation="bilinear")
                for name, value in coefficients.items()}  # fmt: skip
        return self.table.invert(toa, full)

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"lut_path": self.lut_path, "coarse": self.coarse}


def build_physics_generator(
    image_size: int = 256,
    filters: int = 64,
    *,
    depth: int = PAPER_DEPTH,
    residual: bool = True,
    climatology: Atmosphere = CLIMATOLOGY,
    lut_path: str | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build the physics-informed generator: ``{"toa": (b, s, s, 4), "geometry": (b, 6)}`` -> SR.

    Args:
        image_size, filters, depth, seed: the U-Net's, as in
            :func:`s2ac.model.generator.build_generator`.
        residual: Add a learned correction (zero at initialisation) to the physical SR.
        climatology: The atmosphere the untrained head predicts (AOT, water vapour, aerosol
            model); the default is the ``6s`` baseline's.
        lut_path: Look-up table file (default: the packaged one).

    ``geometry`` holds, per sample, the :data:`s2ac.physics.tf_lut.GEOMETRY` values: solar and
    view zenith, relative azimuth (deg), elevation (km), ozone (cm-atm), satellite (0 S2A, 1 S2B).
    """
    check_image_size(image_size, depth)
    table = Lut.load(lut_path)
    models = table.aerosol_models
    (aot_low, aot_high), (wv_low, wv_high) = (
        (table.axes[n].nodes[0], table.axes[n].nodes[-1]) for n in ("aot550", "water_vapour")
    )
    toa = keras.Input(shape=(image_size, image_size, N_BANDS), name="toa")
    geometry = keras.Input(shape=(len(GEOMETRY),), name="geometry")
    x = layers.Concatenate(name="toa_and_geometry")(
        [toa, GeometryMap(image_size, name="geometry_map")(geometry)]
    )
    trunk = unet_trunk(x, filters, depth, seed)
    # Zero kernel, bias = the climatology: untrained, every pixel gets exactly that atmosphere.
    bias = np.zeros(2 + len(models), dtype="float32")
    bias[0] = _logit((climatology.aot550 - aot_low) / (aot_high - aot_low))
    bias[1] = _logit((climatology.water_vapour - wv_low) / (wv_high - wv_low))
    bias[2 + models.index(climatology.aerosol_model)] = _CERTAIN
    head = layers.Conv2DTranspose(
        2 + len(models), 4, strides=2, padding="same", kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(bias), dtype="float32", name="atmosphere",
    )(trunk)  # fmt: skip
    aot = Bounded(0, aot_low, aot_high, name="aot550", dtype="float32")(head)
    water_vapour = Bounded(1, wv_low, wv_high, name="water_vapour", dtype="float32")(head)
    weights = layers.Softmax(name="aerosol_model_weights")(head[..., 2:])
    sr = AtmosphereInverse(lut_path, name="lut_inverse", dtype="float32")(
        [toa, aot, water_vapour, weights, geometry]
    )
    if residual:
        correction = layers.Conv2DTranspose(
            N_BANDS, 4, strides=2, padding="same", kernel_initializer="zeros", dtype="float32",
            name="residual",
        )(trunk)  # fmt: skip
        sr = layers.Add(dtype="float32", name="physics_plus_residual")([sr, correction])
    return keras.Model(inputs={"toa": toa, "geometry": geometry}, outputs=sr,
                       name="physics_generator")  # fmt: skip
