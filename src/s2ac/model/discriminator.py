"""PatchGAN discriminator of pix2pix (Shah et al. section 3.3.2) and its receptive field.

The discriminator is conditional: it sees the TOA input concatenated on channels with either the
true SR or the generator's output, and returns one logit per patch (no sigmoid: the losses take
logits). For a 256x256 input the output is ``(batch, 30, 30, 1)`` and each logit judges a 70x70
pixel window, the 70x70 PatchGAN Isola et al. found the best trade-off between sharpness and
tiling artefacts. :func:`receptive_field` computes the 70 from the layers instead of trusting it.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
from keras import layers

from s2ac.bands import N_BANDS
from s2ac.model.generator import LEAKY_SLOPE, conv_initializer, downsample

#: Smallest input the PatchGAN maps to at least a 2x2 grid of logits.
MIN_IMAGE_SIZE = 32


def build_discriminator(
    image_size: int = 256, filters: int = 64, *, bands: int = N_BANDS, seed: int | None = None
) -> keras.Model:
    """Build the 70x70 PatchGAN: ``[toa, sr]`` -> ``(batch, s/8 - 2, s/8 - 2, 1)`` logits.

    Args:
        image_size: Side of the square input patches.
        filters: Width of the first block (64 in the paper); later blocks use 2x, 4x and 8x.
        bands: Channels of each of the two inputs.
        seed: Seeds the initialisers, so a build is repeatable.

    Returns:
        A Functional ``keras.Model`` named ``discriminator`` with inputs ``toa`` and ``target``.

    Raises:
        ValueError: If ``image_size`` is too small to leave any patch to judge.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size {image_size} is too small for the PatchGAN: it needs at least "
            f"{MIN_IMAGE_SIZE} px"
        )

    def block_seed(index: int) -> int | None:
        return None if seed is None else seed + index

    toa = keras.Input(shape=(image_size, image_size, bands), name="toa")  # (b, 256, 256, 4)
    target = keras.Input(shape=(image_size, image_size, bands), name="target")  # (b, 256, 256, 4)

    x = layers.Concatenate()([toa, target])  # (b, 256, 256, 8)
    x = downsample(filters, 4, apply_batchnorm=False, seed=block_seed(0))(x)  # (b, 128, 128, 64)
    x = downsample(filters * 2, 4, seed=block_seed(1))(x)  # (b, 64, 64, 128)
    x = downsample(filters * 4, 4, seed=block_seed(2))(x)  # (b, 32, 32, 256)

    x = layers.ZeroPadding2D()(x)  # (b, 34, 34, 256)
    x = layers.Conv2D(
        filters * 8,
        4,
        strides=1,
        kernel_initializer=conv_initializer(block_seed(3)),
        use_bias=False,
    )(x)  # (b, 31, 31, 512)
    x = layers.BatchNormalization()(x)  # (b, 31, 31, 512)
    x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(x)  # (b, 31, 31, 512)

    x = layers.ZeroPadding2D()(x)  # (b, 33, 33, 512)
    logits = layers.Conv2D(
        1,
        4,
        strides=1,
        kernel_initializer=conv_initializer(block_seed(4)),
        dtype="float32",  # logits in float32 under mixed precision
        name="logits",
    )(x)  # (b, 30, 30, 1)
    return keras.Model(inputs=[toa, target], outputs=logits, name="discriminator")


def _flatten(model_or_layers: keras.Model | Iterable[layers.Layer]) -> list[layers.Layer]:
    items = model_or_layers.layers if isinstance(model_or_layers, keras.Model) else model_or_layers
    flat: list[layers.Layer] = []
    for item in items:
        flat.extend(_flatten(item) if isinstance(item, keras.Model) else [item])
    return flat


def _square(value: int | tuple[int, ...], name: str, layer: layers.Layer) -> int:
    values = (value,) * 2 if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ValueError(f"layer {layer.name!r}: non-square {name} {values} is not supported")
    return values[0]


def receptive_field(model_or_layers: keras.Model | Iterable[layers.Layer]) -> int:
    """Side in input pixels of the window that one output value depends on.

    Walks the layers in order with the usual recursion: each layer of kernel ``k``, dilation
    ``d`` and stride ``s`` widens the field by ``(d * (k - 1)) * j`` and multiplies the jump ``j``
    (input pixels between neighbouring outputs) by ``s``. Padding, normalisation and activations
    leave it unchanged. Nested models (the blocks of :func:`downsample`) are walked into.

    Args:
        model_or_layers: A chain of layers, or a model whose layers form one (the PatchGAN: the
            two inputs meet in a concatenation, after which the graph is a single path).

    Returns:
        The receptive field in pixels (70 for :func:`build_discriminator`).

    Raises:
        ValueError: For upsampling layers, whose field this recursion does not describe, or
            non-square kernels and strides.
    """
    field, jump = 1, 1
    for layer in _flatten(model_or_layers):
        if isinstance(layer, layers.Conv2DTranspose | layers.UpSampling2D):
            raise ValueError(
                f"layer {layer.name!r} upsamples: receptive_field only handles downsampling chains"
            )
        if isinstance(layer, layers.Conv2D):
            kernel = _square(layer.kernel_size, "kernel_size", layer)
            dilation = _square(layer.dilation_rate, "dilation_rate", layer)
            stride = _square(layer.strides, "strides", layer)
        elif isinstance(layer, layers.MaxPooling2D | layers.AveragePooling2D):
            kernel, dilation = _square(layer.pool_size, "pool_size", layer), 1
            stride = _square(layer.strides, "strides", layer)
        else:
            continue
        field += dilation * (kernel - 1) * jump
        jump *= stride
    return field
