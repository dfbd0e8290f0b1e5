"""Pix2pix losses as pure functions (Shah et al. section 3.4, eqs. 1-4).

λ convention: generator loss = GAN + ``lambda_l1`` · L1 (Isola et al., λ = 100), not the paper's
eq. 3 (L1 + λ·GAN): the L1 term carries the radiometry we are scored on, so λ names how strongly
it dominates the adversarial term, and ``train.lambda_l1`` in the config is that factor.

Both take logits (the PatchGAN has no sigmoid) and compute in float32, so they are safe under
mixed precision. Reference point when reading logs: a discriminator at chance gives ln 2 ≈ 0.693
for the GAN term and for the discriminator loss.
"""

from __future__ import annotations

from typing import Any

from keras import losses, ops


def _bce_from_logits(label: float, logits: Any) -> Any:
    """Mean binary cross-entropy of every patch logit against one constant label."""
    logits = ops.cast(logits, "float32")
    labels = ops.full_like(logits, label)
    return ops.mean(losses.binary_crossentropy(labels, logits, from_logits=True))


def l1_loss(generated: Any, target: Any) -> Any:
    """Mean absolute error over pixels and bands (eq. 1), in reflectance units."""
    return ops.mean(ops.abs(ops.cast(target, "float32") - ops.cast(generated, "float32")))


def generator_loss(
    disc_fake_logits: Any, generated: Any, target: Any, lambda_l1: float
) -> tuple[Any, Any, Any]:
    """Generator objective: fool the discriminator and stay close to the target.

    Args:
        disc_fake_logits: Discriminator logits for ``[toa, generated]``.
        generated: Generator output.
        target: True surface reflectance.
        lambda_l1: Weight of the L1 term (total = GAN + lambda_l1 * L1).

    Returns:
        ``(total, gan, l1)``: float32 scalars; all three are logged.
    """
    gan = _bce_from_logits(1.0, disc_fake_logits)
    l1 = l1_loss(generated, target)
    return gan + lambda_l1 * l1, gan, l1


def discriminator_loss(real_logits: Any, fake_logits: Any) -> Any:
    """Discriminator objective: real pairs labelled 1, generated pairs 0 (eq. 4).

    The mean over real and fake pairs, i.e. ``(BCE_real + BCE_fake) / 2``: eq. 4 averages over
    all samples, and Isola et al. halve the discriminator objective to slow it relative to the
    generator. (The TensorFlow tutorial sums the two; with Adam the factor only changes the
    logged value, which here stays comparable to the generator's GAN term.)

    Returns:
        A float32 scalar.
    """
    return 0.5 * (_bce_from_logits(1.0, real_logits) + _bce_from_logits(0.0, fake_logits))
