"""Figures for reports and MLflow: composites, metric histograms, loss curves, scatter densities.

All functions return a matplotlib ``Figure`` built without pyplot (no global state, no
display); callers save or log it.
True colour is (B4, B3, B2), false colour (B8, B4, B3); both are stretched with one fixed linear
scale (0-0.3 reflectance, 0-0.5 for NIR composites) so TOA, truth and prediction are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from s2ac.bands import BAND_NAMES, band_index

TRUE_COLOUR = ("B4", "B3", "B2")
FALSE_COLOUR = ("B8", "B4", "B3")


def composite(image: np.ndarray, bands: Sequence[str], top: float = 0.3) -> np.ndarray:
    """RGB array in [0, 1] from three bands of an (H, W, 4) reflectance image."""
    rgb = np.stack([image[..., band_index(band)] for band in bands], axis=-1)
    return np.clip(np.nan_to_num(rgb) / top, 0.0, 1.0)


def sample_grid(toa: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> Figure:
    """One row per sample: TOA, truth, prediction (true and false colour) and |error| in red."""
    columns = [
        "TOA",
        "truth SR",
        "predicted SR",
        "TOA false",
        "truth false",
        "pred false",
        "|err| B4",
    ]
    figure = Figure(figsize=(2.2 * len(columns), 2.3 * len(toa)))
    axes = figure.subplots(len(toa), len(columns))
    axes = np.atleast_2d(axes)
    for row in range(len(toa)):
        images = [composite(x, TRUE_COLOUR) for x in (toa[row], truth[row], prediction[row])]
        images += [composite(x, FALSE_COLOUR, 0.5) for x in (toa[row], truth[row], prediction[row])]
        error = np.abs(prediction[row][..., 2] - truth[row][..., 2])
        for column, image in enumerate(images):
            axes[row, column].imshow(image)
        shown = axes[row, -1].imshow(error, cmap="magma", vmin=0, vmax=0.05)
        for column, title in enumerate(columns):
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(title, fontsize=9)
    figure.colorbar(shown, ax=axes[:, -1], shrink=0.6, label="reflectance")
    return figure


def metric_histograms(scores: Mapping[str, pd.DataFrame], ssim_good: float, psnr_good: float):
    """SSIM and PSNR histograms of every method, with the paper's thresholds marked."""
    figure = Figure(figsize=(10, 3.6))
    axes = figure.subplots(1, 2)
    for name, frame in scores.items():
        axes[0].hist(frame["ssim"], bins=30, alpha=0.5, label=name)
        axes[1].hist(frame["psnr"], bins=30, alpha=0.5, label=name)
    for axis, threshold, label in ((axes[0], ssim_good, "SSIM"), (axes[1], psnr_good, "PSNR (dB)")):
        axis.axvline(threshold, color="k", linestyle="--", linewidth=1)
        axis.set_xlabel(label)
        axis.set_ylabel("images")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    return figure


def loss_curves(history: Mapping[str, Sequence[float]]) -> Figure:
    """Generator (total, GAN, L1), discriminator and validation losses per epoch."""
    names = [("gen_gan", "disc"), ("gen_l1", "val_gen_l1"), ("gen_total", "val_gen_total")]
    figure = Figure(figsize=(12, 3.4))
    axes = figure.subplots(1, len(names))
    for axis, group in zip(axes, names, strict=True):
        for name in group:
            if name in history:
                axis.plot(np.arange(1, len(history[name]) + 1), history[name], label=name)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def density_scatter(truth: np.ndarray, prediction: np.ndarray, max_points: int = 200_000) -> Figure:
    """Per-band 2-D histogram of predicted versus true reflectance, with the 1:1 line."""
    figure = Figure(figsize=(3.2 * len(BAND_NAMES), 3.2))
    axes = figure.subplots(1, len(BAND_NAMES))
    flat_truth, flat_pred = (
        truth.reshape(-1, len(BAND_NAMES)),
        prediction.reshape(-1, len(BAND_NAMES)),
    )
    step = max(1, len(flat_truth) // max_points)
    for index, (axis, band) in enumerate(zip(axes, BAND_NAMES, strict=True)):
        x, y = flat_truth[::step, index], flat_pred[::step, index]
        top = float(np.nanpercentile(np.concatenate([x, y]), 99.5)) or 1.0
        axis.hist2d(x, y, bins=120, range=[[0, top], [0, top]], cmap="viridis", cmin=1)
        axis.plot([0, top], [0, top], "w--", linewidth=0.8)
        axis.set_title(band)
        axis.set_xlabel("true SR")
    axes[0].set_ylabel("predicted SR")
    figure.tight_layout()
    return figure


def rmse_by_band(comparison: Mapping[str, pd.DataFrame]) -> Figure:
    """Per split, the RMSE of each band for every method side by side (log scale: the oracle is
    orders of magnitude below the rest)."""
    figure = Figure(figsize=(6.5 * len(comparison), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(comparison)))
    for axis, (split, table) in zip(axes, comparison.items(), strict=True):
        methods = list(table.columns)
        width = 0.8 / len(methods)
        x = np.arange(len(BAND_NAMES))
        for index, method in enumerate(methods):
            values = [float(table.loc[f"rmse_{band}", method]) for band in BAND_NAMES]
            axis.bar(x + index * width, values, width, label=method)
        axis.set_xticks(x + 0.4 - width / 2, BAND_NAMES)
        axis.set_yscale("log")
        axis.set_title(f"{split}: RMSE per band (mean of images)")
        axis.set_ylabel("RMSE (reflectance)")
    axes[-1].legend(fontsize=8)
    figure.tight_layout()
    return figure
