"""A physics-informed generator: the network estimates the atmosphere, 6S inverts it.

The paper's U-Net maps TOA to SR with nothing to keep it physical; trained on narrow data it
learns the scene. This generator predicts the atmosphere instead: the aerosol optical thickness
at 550 nm, the water-vapour column and the aerosol-model weights, on a grid every
:data:`GRID` pixels (80 m; the atmosphere varies over kilometres) and bilinearly in between,
from the TOA image and the acquisition geometry. The committed look-up table's inverse, in
TensorFlow ops (:class:`s2ac.physics.tf_lut.TFLut`), turns TOA into SR under that atmosphere,
adjacency effect included, so every output is a physically possible correction; an optional
small learned residual is added on top.

The estimator is a small convolutional encoder, not a U-Net: what sets the atmosphere is the
darkest surfaces (dark-object physics: their TOA is mostly path radiance) and the haze's blur of
edges, so it sees local features over ~60 px, the whole patch's pooled features and each band's
dark-end quantiles, plus the geometry. A first version put the head on the paper's U-Net
(decoder dropout, 1 s per step): after an epoch of L1 it had barely left the climatology.

Untrained, its head outputs the fixed climatology of the ``6s`` baseline
(:data:`s2ac.physics.corrections.CLIMATOLOGY`) everywhere: the network starts from the physics
baseline and learns only how the atmosphere departs from it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from s2ac.bands import N_BANDS, PIXEL_KM
from s2ac.model.retrieval import DarkObjectAot  # also registers it for loading saved models
from s2ac.physics.corrections import CLIMATOLOGY
from s2ac.physics.lut import Atmosphere, Lut
from s2ac.physics.tf_adjacency import TFEnvironment
from s2ac.physics.tf_lut import GEOMETRY, TFLut

#: Default head logit of the climatology's aerosol model (the others 0): weight 0.87 of 4.
#: A logit that makes it exactly 1 (40) saturates the softmax, whose gradient then never lets
#: the network choose another model (measured: urban patches stuck at a third of their AOT).
MODEL_LOGIT = 3.0


#: Surroundings for the adjacency inverse on 4x coarser pixels (40 m); see AtmosphereInverse.
ENVIRONMENT_FACTOR = 4


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


@keras.saving.register_keras_serializable(package="s2ac")
class GeometryFeatures(layers.Layer):
    """Per-sample geometry ``(b, 6)`` as features ``(b, 5)``, all about 0-1: cosines of the sun
    and view zenith and of the folded relative azimuth, elevation / 2 km, ozone / 0.45 cm-atm."""

    def call(self, geometry: Any) -> Any:
        degrees = np.pi / 180.0
        raa = geometry[:, 2]
        raa = ops.where(raa > 180.0, 360.0 - raa, raa)
        return ops.stack(
            [ops.cos(geometry[:, 0] * degrees), ops.cos(geometry[:, 1] * degrees),
             ops.cos(raa * degrees), geometry[:, 3] / 2.0, geometry[:, 4] / 0.45],
            axis=-1,
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="s2ac")
class DarkObjects(layers.Layer):
    """Each band's quantiles ``(b, 4 * len(quantiles))`` of TOA over the patch: the dark end
    is mostly path radiance (what dark-object subtraction uses), the median the brightness.

    ``stride`` > 1 takes every ``stride``-th pixel in each direction (4: the sort 25x faster,
    a full tile's correction 159 -> 80 s). Not the default: a model *trained* with stride 4
    was worse on the demo data (test RMSE B2 .0144 vs .0123, ood .0307 vs .0221), although the
    stride-1 model scores the same when run with stride 4."""

    def __init__(
        self, quantiles: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5), stride: int = 1,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.quantiles = tuple(float(q) for q in quantiles)
        self.stride = int(stride)

    def call(self, toa: Any) -> Any:
        toa = toa[:, :: self.stride, :: self.stride, :]
        size = toa.shape[1] * toa.shape[2]
        pixels = ops.reshape(ops.transpose(toa, (0, 3, 1, 2)), (-1, N_BANDS, size))
        ordered = ops.sort(pixels, axis=-1)
        n = ordered.shape[-1]
        picks = [ordered[..., min(n - 1, int(q * n))] for q in self.quantiles]
        return ops.concatenate(picks, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"quantiles": self.quantiles, "stride": self.stride}


@keras.saving.register_keras_serializable(package="s2ac")
class Broadcast(layers.Layer):
    """A per-sample vector ``(b, c)`` repeated over a grid like ``reference`` ``(b, h, w, _)``."""

    def call(self, inputs: list[Any]) -> Any:
        vector, reference = inputs
        shape = ops.shape(reference)
        return ops.tile(vector[:, None, None, :], (1, shape[1], shape[2], 1))


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

    The estimates may be on a coarser grid than the image (the atmosphere varies over
    kilometres): the coefficients are computed on their grid and resized bilinearly to the
    image, which cuts the table work by the square of the ratio. A uniform atmosphere gives
    exactly the per-pixel result.

    With ``adjacency`` (``image_size`` then needed) the inverse accounts for light from the
    surroundings, as the data's forward model does: the Lambertian estimate, seen through 6S's
    environment functions (:class:`~s2ac.physics.tf_adjacency.TFEnvironment`), is the
    environment reflectance of the exact non-uniform inverse. One such step brings the inverse
    under the true atmosphere to the noise floor (measured on the default test split: NIR RMSE
    0.0090 Lambertian, 0.0020 with the step, 0.0018 with the true surroundings).

    The surroundings are computed on ``environment_factor``-times coarser pixels and resized
    back: the point-spread functions are kilometres wide (a 40 m block holds 0.6 % of the
    Rayleigh and 6 % of the aerosol weight), so block means change the environment by 2e-4
    RMSE (1 % of its departure from the pixel itself, on the demo's test and ood patches)
    and the FFT 11 times less (63 -> 6 ms per 256 px tile here)."""

    def __init__(
        self, lut_path: str | None = None, adjacency: bool = False,
        image_size: int | None = None, environment_factor: int = ENVIRONMENT_FACTOR,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.lut_path = lut_path
        self.adjacency, self.image_size = bool(adjacency), image_size
        self.environment_factor = int(environment_factor)
        self.table = TFLut(Lut.load(lut_path))
        self.environment = None
        if self.adjacency:
            if image_size is None or not self.table.has_adjacency:
                raise ValueError(
                    "the adjacency inverse needs image_size and a look-up table with the "
                    "adjacency transmittances (rebuild it with `s2ac physics build-lut`)"
                )
            self.environment = TFEnvironment(
                image_size, image_size, PIXEL_KM, self.environment_factor
            )

    def call(self, inputs: list[Any]) -> Any:
        toa, aot, water_vapour, weights, geometry = inputs
        coefficients = self.table.coefficients(aot, water_vapour, weights, geometry)
        if aot.shape[1:3] != toa.shape[1:3]:
            size = ops.shape(toa)[1:3]
            coefficients = {name: ops.image.resize(value, size, interpolation="bilinear")
                            for name, value in coefficients.items()}  # fmt: skip
        lambertian = self.table.invert(toa, coefficients)
        if self.environment is None:
            return lambertian
        # Clipped: a noisy or very hazy first estimate must not feed negative surroundings.
        surroundings = self.environment(ops.stop_gradient(ops.clip(lambertian, 0.0, 1.5)))
        return self.table.invert_adjacent(toa, coefficients, surroundings)

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"lut_path": self.lut_path, "adjacency": self.adjacency,
                                       "image_size": self.image_size,
                                       "environment_factor": self.environment_factor}  # fmt: skip


#: The atmosphere is estimated every GRID pixels (three stride-2 convolutions).
GRID = 8

#: ``dark_object`` prior: AOT spread (max - min over the visible bands) that costs an aerosol
#: model one unit of logit. The model whose spectral shape fits the haze retrieves about the same
#: AOT in every band (spreads of 0.02-0.05); a wrong one drifts by 0.1 and more.
SPREAD_SCALE = 0.05
#: Normalised prior AOT is kept this far from the table's ends, where the logit is infinite.
_PRIOR_MARGIN = 0.01


@keras.saving.register_keras_serializable(package="s2ac")
class AroundPrior(layers.Layer):
    """``[head (b, h, w, 2 + M), retrieved (b, M, 3)]`` -> ``[aot550 (b, h, w), weights
    (b, h, w, M)]``: the head as corrections of the dark-object retrieval.

    Aerosol-model logits are the head's plus ``-spread / SPREAD_SCALE`` (the model whose AOT
    agrees across the bands is favoured; one that finds no AOT for some band is all but ruled
    out); AOT is the retrieved AOT of the chosen models (mixed by
    those weights), moved by the head's channel 0 in logit space, so a zero head gives the
    retrieval itself and any output stays in ``[low, high]``."""

    def __init__(self, low: float, high: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, inputs: list[Any]) -> list[Any]:
        head, retrieved = inputs
        ordered = ops.sort(retrieved, axis=-1)
        median, spread = ordered[..., 1], ordered[..., -1] - ordered[..., 0]  # (b, M)
        # s2ac.physics.retrieval.spread: a model that finds no AOT in some band is out.
        failed = ops.cast(ordered[..., -1] >= self.high - 1e-4, spread.dtype)
        spread = spread + failed * self.high
        logits = head[..., 2:] - (spread / SPREAD_SCALE)[:, None, None, :]
        weights = ops.softmax(logits, axis=-1)
        prior = ops.sum(weights * median[:, None, None, :], axis=-1)
        p = ops.clip((prior - self.low) / (self.high - self.low), _PRIOR_MARGIN, 1 - _PRIOR_MARGIN)
        z = head[..., 0] + ops.log(p / (1.0 - p))
        return [self.low + (self.high - self.low) * ops.sigmoid(z), weights]

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"low": self.low, "high": self.high}


def _conv(width: int, kernel: int, strides: int, seed: int | None, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        width, kernel, strides=strides, padding="same", name=name,
        kernel_initializer=keras.initializers.HeNormal(seed=seed),
    )  # fmt: skip


def _seed(seed: int | None, k: int) -> int | None:
    return None if seed is None else seed + k


def atmosphere_features(
    toa: Any, geometry: Any, filters: int, seed: int | None, retrieved: Any = None
) -> Any:
    """The estimator: TOA ``(b, s, s, 4)`` and geometry (and, with the dark-object prior, the
    retrieved AOTs ``(b, M, 3)``) -> features ``(b, s/8, s/8, 4f)``."""
    x = toa
    for level, width in enumerate((filters, 2 * filters, 4 * filters)):
        x = _conv(width, 4, 2, _seed(seed, level), f"encode_{level}")(x)
        x = layers.LeakyReLU(0.2)(x)
    pooled = [
        layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x),
        DarkObjects(name="dark_objects")(toa), GeometryFeatures(name="geometry_features")(geometry),
    ]  # fmt: skip
    if retrieved is not None:
        pooled.append(layers.Flatten(name="retrieved_aot")(retrieved))
    context = layers.Concatenate(name="context")(pooled)
    context = layers.Dense(4 * filters, kernel_initializer=keras.initializers.HeNormal(
        seed=_seed(seed, 3)), name="context_dense")(context)  # fmt: skip
    context = layers.LeakyReLU(0.2)(context)
    x = layers.Concatenate()([x, Broadcast(name="context_map")([context, x])])
    x = layers.LeakyReLU(0.2)(_conv(4 * filters, 3, 1, _seed(seed, 4), "mix_local_global")(x))
    return layers.LeakyReLU(0.2)(_conv(4 * filters, 1, 1, _seed(seed, 5), "mix_1x1")(x))


def build_physics_generator(
    image_size: int = 256,
    filters: int = 64,
    *,
    residual: bool = False,
    adjacency: bool = True,
    prior: str = "climatology",
    climatology: Atmosphere = CLIMATOLOGY,
    model_logit: float = MODEL_LOGIT,
    lut_path: str | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build the physics-informed generator: ``{"toa": (b, s, s, 4), "geometry": (b, 6)}`` -> SR.

    Args:
        image_size: Patch side, a multiple of :data:`GRID`.
        filters: Width of the estimator's first level (it doubles twice).
        residual: Add a learned correction (zero at initialisation) to the physical SR.
        adjacency: Invert the adjacency effect too (see :class:`AtmosphereInverse`).
        prior: What the untrained head predicts: ``climatology`` (a fixed atmosphere, below) or
            ``dark_object`` (per image, the AOT and aerosol model the darkest pixels allow,
            :class:`s2ac.model.retrieval.DarkObjectAot`; water vapour from the climatology);
            the network learns the departures from it.
        climatology: The atmosphere the untrained head predicts (AOT, water vapour, aerosol
            model); the default is the ``6s`` baseline's.
        model_logit: The untrained head's logit for the climatology's aerosol model (0 for the
            others); 40 makes the untrained generator exactly the ``6s`` baseline (without
            adjacency), but leaves no gradient to learn the aerosol model (see
            :data:`MODEL_LOGIT`).
        lut_path: Look-up table file (default: the packaged one).
        seed: Seeds the initialisers.

    ``geometry`` holds, per sample, the :data:`s2ac.physics.tf_lut.GEOMETRY` values: solar and
    view zenith, relative azimuth (deg), elevation (km), ozone (cm-atm), satellite (0 S2A, 1 S2B).
    """
    if image_size < GRID or image_size % GRID:
        raise ValueError(f"image_size {image_size} must be a positive multiple of {GRID}")
    if prior not in ("climatology", "dark_object"):
        raise ValueError(f"prior {prior!r} is not one of climatology, dark_object")
    table = Lut.load(lut_path)
    models = table.aerosol_models
    (aot_low, aot_high), (wv_low, wv_high) = (
        (table.axes[n].nodes[0], table.axes[n].nodes[-1]) for n in ("aot550", "water_vapour")
    )
    toa = keras.Input(shape=(image_size, image_size, N_BANDS), name="toa")
    geometry = keras.Input(shape=(len(GEOMETRY),), name="geometry")
    retrieved = None
    if prior == "dark_object":
        retrieval = DarkObjectAot(
            lut_path, water_vapour=climatology.water_vapour, name="dark_object_aot", dtype="float32"
        )
        retrieved = retrieval([toa, geometry])
    features = atmosphere_features(toa, geometry, filters, seed, retrieved)
    # Zero kernel, bias = the prior: untrained, every pixel gets exactly that atmosphere.
    bias = np.zeros(2 + len(models), dtype="float32")
    bias[1] = _logit((climatology.water_vapour - wv_low) / (wv_high - wv_low))
    if retrieved is None:
        bias[0] = _logit((climatology.aot550 - aot_low) / (aot_high - aot_low))
        bias[2 + models.index(climatology.aerosol_model)] = model_logit
    head = layers.Conv2D(
        2 + len(models), 1, kernel_initializer="zeros", dtype="float32", name="atmosphere",
        bias_initializer=keras.initializers.Constant(bias),
    )(features)  # fmt: skip
    water_vapour = Bounded(1, wv_low, wv_high, name="water_vapour", dtype="float32")(head)
    if retrieved is None:
        aot = Bounded(0, aot_low, aot_high, name="aot550", dtype="float32")(head)
        weights = layers.Softmax(name="aerosol_model_weights")(head[..., 2:])
    else:
        aot, weights = AroundPrior(aot_low, aot_high, name="aot550_around_prior",
                                   dtype="float32")([head, retrieved])  # fmt: skip
    sr = AtmosphereInverse(lut_path, adjacency=adjacency, image_size=image_size,
                           name="lut_inverse", dtype="float32")(
        [toa, aot, water_vapour, weights, geometry]
    )  # fmt: skip
    if residual:
        x = layers.Concatenate(name="toa_and_sr")([toa, sr])
        x = layers.LeakyReLU(0.2)(_conv(filters, 3, 1, _seed(seed, 6), "residual_features")(x))
        correction = layers.Conv2D(N_BANDS, 1, kernel_initializer="zeros", dtype="float32",
                                   name="residual")(x)  # fmt: skip
        sr = layers.Add(dtype="float32", name="physics_plus_residual")([sr, correction])
    return keras.Model(inputs={"toa": toa, "geometry": geometry}, outputs=sr,
                       name="physics_generator")  # fmt: skip
