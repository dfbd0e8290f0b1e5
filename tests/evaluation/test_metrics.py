import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from s2ac.evaluation.metrics import PSNR_CAP_DB, aggregate, image_metrics, psnr


@pytest.fixture
def truth() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.02, 0.4, size=(64, 64, 4)).astype(np.float32)
    return base


def test_identical_images_have_ssim_one_and_capped_psnr(truth):
    row = image_metrics(truth, truth)
    assert row["ssim"] == pytest.approx(1.0)
    assert row["psnr"] == PSNR_CAP_DB
    assert row["rmse"] == row["mae"] == row["bias"] == 0.0
    table = aggregate([row, image_metrics(truth + 0.01, truth)])
    assert np.isfinite(table.to_numpy()).all()


def test_known_offset_gives_known_rmse_bias_and_psnr(truth):
    row = image_metrics(truth + 0.02, truth)
    assert row["rmse"] == pytest.approx(0.02, abs=1e-6)
    assert row["mae"] == pytest.approx(0.02, abs=1e-6)
    assert row["bias"] == pytest.approx(0.02, abs=1e-6)
    assert row["bias_B8"] == pytest.approx(0.02, abs=1e-6)
    assert row["psnr"] == pytest.approx(10 * np.log10(1 / 0.02**2), abs=1e-3)  # 33.98 dB
    # SSIM barely notices a constant offset: why every report shows RMSE and bias per band.
    assert row["ssim"] > 0.95


def test_per_band_errors_are_separated(truth):
    prediction = truth.copy()
    prediction[..., 2] -= 0.05  # red only
    row = image_metrics(prediction, truth)
    assert row["bias_B4"] == pytest.approx(-0.05, abs=1e-6)
    assert row["rmse_B2"] == row["rmse_B3"] == row["rmse_B8"] == 0.0
    assert row["rmse"] == pytest.approx(0.05 / 2, abs=1e-6)  # sqrt(0.05^2 / 4)


def test_ssim_and_psnr_match_skimage(truth):
    rng = np.random.default_rng(1)
    prediction = (truth + rng.normal(0, 0.01, truth.shape)).astype(np.float32)
    row = image_metrics(prediction, truth)
    expected_ssim = np.mean(
        [
            structural_similarity(
                truth[..., b].astype(np.float64),
                prediction[..., b].astype(np.float64),
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for b in range(4)
        ]
    )
    assert row["ssim"] == pytest.approx(expected_ssim, abs=1e-9)
    expected_psnr = peak_signal_noise_ratio(
        truth.astype(np.float64), prediction.astype(np.float64), data_range=1.0
    )
    assert row["psnr"] == pytest.approx(expected_psnr, abs=1e-6)
    assert psnr(prediction, truth) == pytest.approx(expected_psnr, abs=1e-6)


def test_aggregate_has_paper_columns_and_shares(truth):
    rows = [image_metrics(truth + offset, truth) for offset in (0.0, 0.01, 0.05)]
    table = aggregate(rows)
    assert list(table.columns) == ["max", "min", "mean", "sd"]
    assert table.loc["rmse", "max"] == pytest.approx(0.05, abs=1e-6)
    assert table.loc["rmse", "min"] == 0.0
    # PSNR: 100 (capped), 40 and 26 dB -> two of three above 30 dB.
    assert table.attrs["share_psnr_good"] == pytest.approx(2 / 3)
    assert table.attrs["n_images"] == 3
    with pytest.raises(ValueError, match="no images"):
        aggregate([])


def test_shape_mismatch_is_a_clear_error(truth):
    with pytest.raises(ValueError, match="must both be"):
        image_metrics(truth[..., :3], truth)
