"""U-Net generator of pix2pix (Isola et al. 2017; Shah et al. section 3.3.1) for reflectance.

The layout follows the TensorFlow pix2pix tutorial: :func:`downsample` and :func:`upsample` build
small blocks, :func:`build_generator` only stacks them. At ``filters=64`` and ``depth=8`` this is
the paper's network: encoder 64, 128, 256, 512, 512, 512, 512, 512 (a 1x1 bottleneck for 256x256
input), a mirrored decoder with dropout 0.5 in its first three blocks, and skip connections.

Output head: a linear ``Conv2DTranspose`` to the 4 bands, not the tutorial's ``tanh``. Images are
scaled to [-1, 1] for ``tanh``; reflectance is physical (SR is mostly 0-0.6, bright targets pass
1, Sen2Cor can write slightly negative values), and squashing it would make the extremes hardest
to reach and force a rescaling convention on every caller. The head predicts reflectance directly
and the L1 loss is in reflectance units. It is float32 even under mixed precision, so outputs and
losses never round to float16.

``residual=True`` (option, off by default to match the paper) predicts a correction added to the
TOA input instead. Atmospheric correction is close to the identity (path radiance and
transmittance shift TOA by a few hundredths), so starting exactly at the identity baseline (the
head is zero-initialised) lets training spend its steps on the correction rather than on
relearning the scene.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from s2ac.bands import N_BANDS

#: Depth of the paper's U-Net: 8 stride-2 convolutions take 256x256 to a 1x1 bottleneck.
PAPER_DEPTH = 8
#: Dropout rate and number of decoder blocks (from the bottleneck) that use it (pix2pix).
DROPOUT_RATE = 0.5
DROPOUT_BLOCKS = 3
#: Negative slope of the encoder's LeakyReLU (pix2pix; Keras 3 defaults to 0.3).
LEAKY_SLOPE = 0.2
#: pix2pix initialises every convolution from N(0, 0.02).
INIT_STDDEV = 0.02


def conv_initializer(seed: int | None = None) -> keras.initializers.Initializer:
    """N(0, 0.02), as pix2pix initialises every convolution."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=INIT_STDDEV, seed=seed)


def downsample(
    filters: int, size: int, apply_batchnorm: bool = True, seed: int | None = None
) -> keras.Sequential:
    """Encoder block: Conv ``size``x``size`` stride 2 -> BatchNorm -> LeakyReLU(0.2).

    No convolution bias, as in the TensorFlow tutorial: BatchNorm's offset makes it redundant,
    and on the first block (no BatchNorm) the TensorFlow graph optimizer fails to fuse
    Conv + BiasAdd + LeakyReLU under a gradient tape and logs an error every trace.
    """
    block = keras.Sequential()
    block.add(
        layers.Conv2D(
            filters,
            size,
            strides=2,
            padding="same",
            kernel_initializer=conv_initializer(seed),
            use_bias=False,
        )
    )
    if apply_batchnorm:
        block.add(layers.BatchNormalization())
    block.add(layers.LeakyReLU(negative_slope=LEAKY_SLOPE))
    return block


def upsample(
    filters: int, size: int, apply_dropout: bool = False, seed: int | None = None
) -> keras.Sequential:
    """Decoder block: ConvTranspose stride 2 -> BatchNorm -> Dropout(0.5, optional) -> ReLU.

    Dropout is pix2pix's only noise source (it replaces a latent z), so it stays on in training.
    """
    block = keras.Sequential()
    block.add(
        layers.Conv2DTranspose(
            filters,
            size,
            strides=2,
            padding="same",
            kernel_initializer=conv_initializer(seed),
            use_bias=False,
        )
    )
    block.add(layers.BatchNormalization())
    if apply_dropout:
        block.add(layers.Dropout(DROPOUT_RATE, seed=seed))
    block.add(layers.ReLU())
    return block


def encoder_filters(filters: int, depth: int) -> list[int]:
    """Width of each encoder block: doubling from ``filters``, capped at ``8 * filters``."""
    return [min(filters * 2**level, filters * 8) for level in range(depth)]


def check_image_size(image_size: int, depth: int) -> None:
    """Raise ``ValueError`` unless ``depth`` stride-2 convolutions divide ``image_size`` exactly.

    Each level halves the size and the decoder doubles it back; skip connections only line up if
    no level rounds, so the size must be a multiple of ``2**depth`` (256 for the paper's depth 8).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    step = 2**depth
    if image_size < step or image_size % step:
        raise ValueError(
            f"image_size {image_size} is not a multiple of 2**depth = {step}: a U-Net of depth "
            f"{depth} halves the size {depth} times (use patches of {step}, {2 * step}, ... px, "
            "or a smaller depth)"
        )


def build_generator(
    image_size: int = 256,
    filters: int = 64,
    *,
    depth: int = PAPER_DEPTH,
    bands: int = N_BANDS,
    residual: bool = False,
    seed: int | None = None,
) -> keras.Model:
    """Build the U-Net generator: TOA reflectance ``(batch, s, s, bands)`` -> SR, same shape.

    Args:
        image_size: Side of the square input patch; a multiple of ``2**depth``.
        filters: Width of the first encoder block (64 in the paper; tests use 8).
        depth: Number of encoder blocks. The paper's 8 needs 256 px patches; a smaller depth lets
            tests train on small patches (the receptive field and bottleneck shrink with it).
        bands: Channels in and out (the 4 bands of :data:`s2ac.bands.BAND_NAMES`).
        residual: Predict a correction added to the TOA input instead of SR directly.
        seed: Seeds initialisers and dropout, so a build (and its dropout masks) is repeatable.

    Returns:
        A Functional ``keras.Model`` named ``generator`` (only built-in layers: it loads without
        s2ac installed).

    Raises:
        ValueError: If ``image_size`` is not a multiple of ``2**depth``.
    """
    check_image_size(image_size, depth)
    toa = keras.Input(shape=(image_size, image_size, bands), name="toa")  # (b, 256, 256, 4)
    trunk = unet_trunk(toa, filters, depth, seed)
    head = layers.Conv2DTranspose(
        bands,
        4,
        strides=2,
        padding="same",
        kernel_initializer="zeros" if residual else conv_initializer(_seed(seed, 2 * depth)),
        dtype="float32",  # float32 output under mixed precision
        name="head",
    )  # (b, 256, 256, 4)
    x = head(trunk)
    if residual:
        x = layers.Add(dtype="float32", name="toa_plus_correction")([toa, x])
    return keras.Model(inputs=toa, outputs=x, name="generator")


def _seed(seed: int | None, index: int) -> int | None:
    return None if seed is None else seed + index


def unet_trunk(x: Any, filters: int, depth: int, seed: int | None = None) -> Any:
    """The U-Net's encoder and decoder up to, not including, the last transposed convolution:
    ``(b, s, s, c)`` -> ``(b, s/2, s/2, 2 * filters)``. Each generator adds its own head."""
    widths = encoder_filters(filters, depth)
    down_stack = [
        downsample(width, 4, apply_batchnorm=level > 0, seed=_seed(seed, level))
        for level, width in enumerate(widths)
    ]
    # Shapes for the paper's network (256 px, filters 64, depth 8):
    #   (b, 128, 128, 64)   no BatchNorm on the first block (pix2pix)
    #   (b, 64, 64, 128)
    #   (b, 32, 32, 256)
    #   (b, 16, 16, 512)
    #   (b, 8, 8, 512)
    #   (b, 4, 4, 512)
    #   (b, 2, 2, 512)
    #   (b, 1, 1, 512)      bottleneck
    up_stack = [
        upsample(width, 4, apply_dropout=index < DROPOUT_BLOCKS, seed=_seed(seed, depth + index))
        for index, width in enumerate(reversed(widths[:-1]))
    ]
    # Shapes after concatenating the skip connection:
    #   (b, 2, 2, 1024)     dropout
    #   (b, 4, 4, 1024)     dropout
    #   (b, 8, 8, 1024)     dropout
    #   (b, 16, 16, 1024)
    #   (b, 32, 32, 512)
    #   (b, 64, 64, 256)
    #   (b, 128, 128, 128)
    skips = []
    for down in down_stack:
        x = down(x)
        skips.append(x)
    for up, skip in zip(up_stack, reversed(skips[:-1]), strict=True):  # the bottleneck has none
        x = layers.Concatenate()([up(x), skip])
    return x
