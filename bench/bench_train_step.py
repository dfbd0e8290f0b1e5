"""Benchmark: s2ac's pix2pix train step against a plain tutorial-style reference, same run.

Writes ``bench/results/train_step.json``. Run: ``.venv/bin/python bench/bench_train_step.py``
(``--quick``: width 8, a few steps; a smoke of the code, not a measurement).

* **reference**: the TensorFlow pix2pix tutorial's ``train_step`` as written there: a
  ``tf.function`` with two GradientTapes, the discriminator called on the real and the generated
  pair, Adam(2e-4, 0.5), ``GAN + 100 L1``, nothing tuned. Same networks (s2ac's builders at the
  paper's width 64), same 256x256x4 inputs, fed from memory.
* **s2ac**: ``Pix2Pix.fit`` as ``s2ac train`` runs it (``train_step``, metrics, a tf.data input),
  float32, plus the variants a user can switch on: ``jit_compile`` and Keras ``mixed_bfloat16``.
* **matmul peak**: a dense float32 (and bfloat16) 4096x4096 matmul, the ceiling the train
  step's GFLOP/s is a share of. A train step's FLOPs are counted from the convolutions' shapes
  (forward of G + 2 forward of D, times 3 for the backward pass: an estimate, stated as such).

Batch 2 (the paper's) and 1. The first steps (tracing) are not timed. Figures vary up to 2x
between runs on shared machines: only ratios from one run are reported.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from common import write

from s2ac.config import TrainConfig
from s2ac.model.discriminator import build_discriminator
from s2ac.model.generator import build_generator
from s2ac.model.pix2pix import build_pix2pix

SIZE = 256


def matmul_gflops(dtype: tf.DType, n: int = 4096, repeats: int = 10) -> float:
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    run = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    run().numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        run().numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def conv_flops(model: keras.Model) -> float:
    """Multiply-adds x 2 of every convolution of one forward pass, per sample."""
    total = 0.0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            k, _, c_out, c_in = layer.kernel.shape
            _, h, w, _ = layer.input.shape
            total += 2.0 * h * w * k * k * c_in * c_out
        elif isinstance(layer, keras.layers.Conv2D):
            k, _, c_in, c_out = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2.0 * h * w * k * k * c_in * c_out
    return total


def batches(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    toa = rng.uniform(0.0, 0.4, (batch, SIZE, SIZE, 4)).astype(np.float32)
    return toa, (0.9 * toa).astype(np.float32)


def time_steps(step: Callable[[], Any], warmup: int, timed: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(timed):
        step()
    return timed / (time.perf_counter() - start)


def reference(filters: int, batch: int, warmup: int, timed: int) -> float:
    """The tutorial's train step, verbatim in structure."""
    generator = build_generator(SIZE, filters, seed=0)
    discriminator = build_discriminator(SIZE, filters, seed=1)
    loss_object = keras.losses.BinaryCrossentropy(from_logits=True)
    generator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
    discriminator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)

    @tf.function
    def train_step(input_image: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            gen_output = generator(input_image, training=True)
            disc_real_output = discriminator([input_image, target], training=True)
            disc_generated_output = discriminator([input_image, gen_output], training=True)
            gan_loss = loss_object(tf.ones_like(disc_generated_output), disc_generated_output)
            l1_loss = tf.reduce_mean(tf.abs(target - gen_output))
            gen_total_loss = gan_loss + 100.0 * l1_loss
            disc_loss = loss_object(tf.ones_like(disc_real_output), disc_real_output) + loss_object(
                tf.zeros_like(disc_generated_output), disc_generated_output
            )
        generator_gradients = gen_tape.gradient(gen_total_loss, generator.trainable_variables)
        discriminator_gradients = disc_tape.gradient(disc_loss, discriminator.trainable_variables)
        generator_optimizer.apply_gradients(
            zip(generator_gradients, generator.trainable_variables, strict=True)
        )
        discriminator_optimizer.apply_gradients(
            zip(discriminator_gradients, discriminator.trainable_variables, strict=True)
        )
        return gen_total_loss

    toa, sr = (tf.constant(x) for x in batches(batch))
    return time_steps(lambda: train_step(toa, sr).numpy(), warmup, timed)


def project(filters: int, batch: int, warmup: int, timed: int, **changes: Any) -> float:
    """``Pix2Pix.fit`` as ``s2ac train`` runs it (one epoch of ``timed`` steps, after warm-up)."""
    policy = changes.pop("policy", "float32")
    keras.mixed_precision.set_global_policy(policy)
    try:
        config = TrainConfig(generator_filters=filters, discriminator_filters=filters, **changes)
        model = build_pix2pix(config, SIZE)
        data = tf.data.Dataset.from_tensors(batches(batch)).repeat().prefetch(2)
        model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=timed, epochs=1, verbose=0)
        return timed / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main(quick: bool) -> None:
    filters, warmup, timed = (8, 1, 2) if quick else (64, 3, 12)
    step_flops = {}
    g, d = build_generator(SIZE, filters), build_discriminator(SIZE, filters)
    per_sample = 3 * (conv_flops(g) + 2 * conv_flops(d))
    peak = {"float32": matmul_gflops(tf.float32, 1024 if quick else 4096),
            "bfloat16": matmul_gflops(tf.bfloat16, 1024 if quick else 4096)}  # fmt: skip
    print({"matmul_gflops": peak}, flush=True)
    rows = []
    cases = [("reference", {}), ("s2ac", {}), ("s2ac jit_compile", {"jit_compile": True}),
             ("s2ac mixed_bfloat16", {"policy": "mixed_bfloat16"})]  # fmt: skip
    for batch in (2, 1):
        step_flops[batch] = per_sample * batch
        for name, changes in cases:
            if batch == 1 and name not in ("reference", "s2ac"):
                continue
            if name == "reference":
                rate = reference(filters, batch, warmup, timed)
            else:
                rate = project(filters, batch, warmup, timed, **changes)
            gflops = rate * step_flops[batch] / 1e9
            rows.append({"case": name, "batch": batch, "steps_per_s": round(rate, 3),
                         "gflops": round(gflops, 1),
                         "share_of_f32_peak": round(gflops / peak["float32"], 3)})  # fmt: skip
            print(rows[-1], flush=True)
    ratios = {}
    for batch in (2, 1):
        by = {r["case"]: r["steps_per_s"] for r in rows if r["batch"] == batch}
        ratios[f"s2ac/reference batch {batch}"] = round(by["s2ac"] / by["reference"], 3)
    best = max((r for r in rows if r["batch"] == 2), key=lambda r: r["steps_per_s"])
    ratios["best s2ac variant/reference batch 2"] = round(
        best["steps_per_s"] / next(r["steps_per_s"] for r in rows
                                   if r["batch"] == 2 and r["case"] == "reference"), 3)  # fmt: skip
    print(ratios, flush=True)
    write("train_step_quick" if quick else "train_step", {
        "filters": filters, "image": [SIZE, SIZE, 4], "warmup_steps": warmup,
        "timed_steps": timed, "matmul_gflops": {k: round(v, 1) for k, v in peak.items()},
        "train_step_gflop_estimate": {str(b): round(f / 1e9, 1) for b, f in step_flops.items()},
        "results": rows, "ratios": ratios, "best_batch2": best["case"],
    })  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 8, 2 timed steps: a smoke")
    main(parser.parse_args().quick)
