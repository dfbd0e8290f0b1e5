"""Image-quality metrics of surface reflectance, with the conventions the paper leaves open.

Per image (256 x 256 x 4 reflectance, bands B2, B3, B4, B8):

* SSIM: Gaussian window (sigma 1.5, truncated to 11 x 11), data_range 1.0 on reflectance,
  population covariance (Wang et al. 2004); computed per band, the image SSIM is the band mean.
* PSNR: 10 log10(data_range^2 / MSE) over all bands, data_range 1.0. Identical images have
  MSE 0; their PSNR is capped at :data:`PSNR_CAP_DB` so aggregates never contain inf.
* RMSE, MAE and bias (prediction minus truth), per band and over all bands.

Non-finite truth or prediction pixels are excluded from RMSE/MAE/bias/PSNR.
Aggregates over images (the paper's Tables 2 and 3): max, min, mean and sd, plus the share of
images with SSIM > 0.85 and with PSNR > 30 dB.

Summaries over a split (:func:`summarize`): every metric as the mean of per-image values (``rmse``,
``rmse_B2``, ...); RMSE and MAE also pooled over all pixels of the split (``rmse_pooled``,
``rmse_pooled_B2``, ...); and, since surface reflectance uses a small part of data_range 1.0, the
relative RMSE per band (``rel_rmse_B2`` = pooled RMSE / mean true SR of that band).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from skimage.metrics import structural_similarity

from s2ac.bands import BAND_NAMES
from s2ac.config import EvaluateConfig

PSNR_CAP_DB = 100.0


def _check(prediction: np.ndarray, truth: np.ndarray) -> None:
    if prediction.shape != truth.shape or prediction.ndim != 3:
        raise ValueError(
            f"prediction {prediction.shape} and truth {truth.shape} must both be (H, W, bands)"
        )


def psnr(prediction: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB over finite pixels, capped at :data:`PSNR_CAP_DB` for identical images."""
    error = (prediction.astype(np.float64) - truth.astype(np.float64))[
        np.isfinite(prediction) & np.isfinite(truth)
    ]
    if not error.size:  # nothing to score: NaN, not the cap (min(100, nan) is 100)
        return float("nan")
    mse = float(np.mean(error**2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10.0 * np.log10(data_range**2 / mse)))


def ssim_per_band(
    prediction: np.ndarray, truth: np.ndarray, config: EvaluateConfig | None = None
) -> np.ndarray:
    """SSIM of each band with a Gaussian window (see module docstring)."""
    config = config or EvaluateConfig()
    truncate = (config.ssim_window // 2) / config.ssim_sigma  # 11 px window at sigma 1.5
    return np.array(
        [
            structural_similarity(
                truth[..., band].astype(np.float64),
                prediction[..., band].astype(np.float64),
                data_range=config.data_range,
                gaussian_weights=True,
                sigma=config.ssim_sigma,
                truncate=truncate,
                use_sample_covariance=False,
            )
            for band in range(truth.shape[-1])
        ]
    )


def image_metrics(
    prediction: np.ndarray, truth: np.ndarray, config: EvaluateConfig | None = None
) -> dict[str, float]:
    """All metrics of one image: overall SSIM/PSNR/RMSE/MAE/bias and the same per band."""
    config = config or EvaluateConfig()
    _check(prediction, truth)
    band_ssim = ssim_per_band(prediction, truth, config)
    error = prediction.astype(np.float64) - truth.astype(np.float64)
    valid = np.isfinite(error)
    row: dict[str, float] = {
        "ssim": float(band_ssim.mean()),
        "psnr": psnr(prediction, truth, config.data_range),
        "rmse": float(np.sqrt(np.mean(error[valid] ** 2))),
        "mae": float(np.mean(np.abs(error[valid]))),
        "bias": float(np.mean(error[valid])),
    }
    for index, name in enumerate(BAND_NAMES[: truth.shape[-1]]):
        band_error = error[..., index][valid[..., index]]
        row[f"ssim_{name}"] = float(band_ssim[index])
        row[f"psnr_{name}"] = psnr(
            prediction[..., index : index + 1], truth[..., index : index + 1]
        )
        row[f"rmse_{name}"] = float(np.sqrt(np.mean(band_error**2)))
        row[f"mae_{name}"] = float(np.mean(np.abs(band_error)))
        row[f"bias_{name}"] = float(np.mean(band_error))
        row[f"n_{name}"] = float(band_error.size)  # pixels scored: weights of pooled summaries
        row[f"truth_mean_{name}"] = float(np.mean(truth[..., index][valid[..., index]]))
    return row


#: Mean-of-images columns of :func:`summarize`, before the pooled and relative ones.
MEAN_KEYS = ["ssim", "psnr", "rmse", "mae", "bias"] + [
    f"{metric}_{band}" for metric in ("ssim", "psnr", "rmse", "mae", "bias") for band in BAND_NAMES
]


def summarize(frame: pd.DataFrame) -> pd.Series:
    """One split's summary of per-image rows: means, pooled RMSE/MAE and relative RMSE."""
    if frame.empty:
        raise ValueError("no images to summarize")
    out = frame[MEAN_KEYS].mean()
    counts = frame[[f"n_{band}" for band in BAND_NAMES]].to_numpy()
    mse = frame[[f"rmse_{band}" for band in BAND_NAMES]].to_numpy() ** 2
    mae = frame[[f"mae_{band}" for band in BAND_NAMES]].to_numpy()
    truth = frame[[f"truth_mean_{band}" for band in BAND_NAMES]].to_numpy()
    total = counts.sum(axis=0)
    pooled_mse = (counts * mse).sum(axis=0) / total
    pooled_mae = (counts * mae).sum(axis=0) / total
    truth_mean = (counts * truth).sum(axis=0) / total
    out["rmse_pooled"] = float(np.sqrt((counts * mse).sum() / counts.sum()))
    out["mae_pooled"] = float((counts * mae).sum() / counts.sum())
    for index, band in enumerate(BAND_NAMES):
        out[f"rmse_pooled_{band}"] = float(np.sqrt(pooled_mse[index]))
        out[f"mae_pooled_{band}"] = float(pooled_mae[index])
        out[f"rel_rmse_{band}"] = float(np.sqrt(pooled_mse[index]) / truth_mean[index])
    return out


def aggregate(
    rows: Iterable[dict[str, float]], config: EvaluateConfig | None = None
) -> pd.DataFrame:
    """Paper-style table: one row per metric with max, min, mean, sd (+ shares above thresholds)."""
    config = config or EvaluateConfig()
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise ValueError("no images to aggregate")
    table = pd.DataFrame(
        {
            "max": frame.max(),
            "min": frame.min(),
            "mean": frame.mean(),
            "sd": frame.std(ddof=0),
        }
    )
    table.attrs["n_images"] = len(frame)
    table.attrs["share_ssim_good"] = float((frame["ssim"] > config.ssim_good).mean())
    table.attrs["share_psnr_good"] = float((frame["psnr"] > config.psnr_good).mean())
    return table
