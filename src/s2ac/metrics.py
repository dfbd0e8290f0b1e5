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
    mse = float(np.mean(error**2)) if error.size else np.nan
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
    return row


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
