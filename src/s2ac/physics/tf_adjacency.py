"""The environment reflectance of :mod:`s2ac.physics.adjacency` in TensorFlow ops.

The physics-informed generator inverts the adjacency effect inside the graph: its first,
Lambertian estimate of the surface is seen through 6S's Rayleigh and aerosol point-spread
functions, and that environment enters the exact inverse. The PSFs reach 2 km (200 pixels at
10 m), so the convolution is an FFT, as in the NumPy code: the scene mirrored at its borders,
the same zero padding and the same kernel spectra (constants for a fixed image size), plus the
share of the signal beyond the PSF radius times the scene mean. It equals
:func:`s2ac.physics.adjacency.environment` to float32 precision and is differentiable.
"""

from __future__ import annotations

import math

import tensorflow as tf
from scipy import fft

from s2ac.physics.adjacency import (
    PSF_RADIUS_KM,
    _kernel_spectrum,
    all_environments,
    environment_share,
)


def _mirror(x: tf.Tensor, pad: int, axis: int) -> tf.Tensor:
    """Symmetric padding by ``pad`` on both sides of ``axis``, mirrored as often as needed when
    ``pad`` exceeds the size (as ``np.pad(mode="symmetric")``)."""
    size = x.shape[axis]
    flipped = tf.reverse(x, [axis])
    left, right = [], []
    for k in range(math.ceil(pad / size)):
        take = min(size, pad - k * size)
        source = flipped if k % 2 == 0 else x
        left.insert(0, _take(source, axis, slice(size - take, size)))
        right.append(_take(source, axis, slice(0, take)))
    return tf.concat([*left, x, *right], axis=axis)


def _take(x: tf.Tensor, axis: int, index: slice) -> tf.Tensor:
    key = [slice(None)] * len(x.shape)
    key[axis] = index
    return x[tuple(key)]


class TFEnvironment:
    """Rayleigh and aerosol environment reflectances of ``(B, H, W, C)`` surfaces of one size.

    Args:
        height, width: The image size (static: the kernel spectra depend on it).
        pixel_km: Pixel size in km (Sentinel-2 10 m bands: 0.01).
        factor: Convolve block means of ``factor`` x ``factor`` pixels and resize back (must
            divide the size); 1 is the exact NumPy result, 4 is what the physics generator uses.
    """

    def __init__(self, height: int, width: int, pixel_km: float, factor: int = 1) -> None:
        if factor < 1 or height % factor or width % factor:
            raise ValueError(f"factor {factor} must be >= 1 and divide {height}x{width}")
        self.height, self.width, self.factor = int(height), int(width), int(factor)
        self.coarse = (self.height // factor, self.width // factor)
        coarse_km = pixel_km * factor
        self.pad = math.ceil(PSF_RADIUS_KM / coarse_km - 1e-9)
        padded = (self.coarse[0] + 2 * self.pad, self.coarse[1] + 2 * self.pad)
        self.shape = (fft.next_fast_len(padded[0] + self.pad, real=True),
                      fft.next_fast_len(padded[1] + self.pad, real=True))  # fmt: skip
        self.spectra, self.far = [], []
        for coefficients in all_environments():
            spectrum = _kernel_spectrum(coefficients, coarse_km, self.shape)
            self.spectra.append(tf.constant(spectrum.astype("complex64")))
            self.far.append(float(1.0 - environment_share(PSF_RADIUS_KM, coefficients)))

    def __call__(self, surface: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        surface = tf.cast(surface, tf.float32)
        if tuple(surface.shape[1:3]) != (self.height, self.width):
            raise ValueError(
                f"TFEnvironment was built for {self.height}x{self.width} images, got "
                f"{tuple(surface.shape[1:3])}"
            )
        if self.factor > 1:  # block means: the PSFs are kilometres wide, 4 px are 40 m
            surface = tf.nn.avg_pool2d(surface, self.factor, self.factor, "VALID")
        x = tf.transpose(surface, [0, 3, 1, 2])  # FFT over the last two
        height, width = self.coarse
        padded = _mirror(_mirror(x, self.pad, 2), self.pad, 3)
        spectrum = tf.signal.rfft2d(padded, fft_length=self.shape)
        mean = tf.reduce_mean(x, axis=[2, 3], keepdims=True)
        out = []
        for kernel, far in zip(self.spectra, self.far, strict=True):
            near = tf.signal.irfft2d(spectrum * kernel, fft_length=self.shape)
            near = near[:, :, self.pad : self.pad + height, self.pad : self.pad + width]
            env = tf.transpose(near + far * mean, [0, 2, 3, 1])
            if self.factor > 1:
                env = tf.image.resize(env, (self.height, self.width), method="bilinear")
            out.append(env)
        return out[0], out[1]
