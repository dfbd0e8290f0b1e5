"""Precision and distribution choices, made once by the training entry point.

Both are measured decisions (NOTES-environment.md): on the 2-core CPUs mixed precision was slower,
on GPUs ``mixed_float16`` usually pays. Call :func:`configure_precision` before building models
(the Keras dtype policy is global and read when layers are created) and build and compile inside
``strategy().scope()``.
"""

from __future__ import annotations

from typing import Literal

import keras
import tensorflow as tf

PrecisionMode = Literal["auto", "off", "mixed_float16", "mixed_bfloat16"]
_MODES = ("auto", "off", "mixed_float16", "mixed_bfloat16")


def gpu_count() -> int:
    """Number of GPUs TensorFlow can see."""
    return len(tf.config.list_physical_devices("GPU"))


def configure_precision(mode: PrecisionMode = "auto") -> str:
    """Set the global Keras dtype policy and return its name.

    Args:
        mode: ``"auto"`` uses ``mixed_float16`` only if a GPU is visible, else ``float32``;
            ``"off"`` forces ``float32``; ``"mixed_float16"`` / ``"mixed_bfloat16"`` force that
            mixed precision (bfloat16 needs no loss scaling; CPUs with AMX or AVX-512 BF16 run
            its matmuls and convolutions natively: ``bench/README.md`` measures whether it pays).

    Returns:
        The policy now in effect: ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.

    Raises:
        ValueError: For any other mode.
    """
    if mode not in _MODES:
        raise ValueError(f"precision mode {mode!r} is not one of {', '.join(_MODES)}")
    if mode == "auto":
        policy = "mixed_float16" if gpu_count() > 0 else "float32"
    else:
        policy = "float32" if mode == "off" else mode
    keras.mixed_precision.set_dtype_policy(policy)
    return policy


def strategy() -> tf.distribute.Strategy:
    """``MirroredStrategy`` over all GPUs if there are several, else the default strategy."""
    if gpu_count() > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
