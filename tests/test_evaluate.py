from pathlib import Path

import numpy as np
import pytest

from s2ac.config import DataConfig, EvaluateConfig
from s2ac.data.synthetic import synthesize
from s2ac.evaluate import baseline_methods, evaluate, score_methods, side_by_side
from s2ac.physics.baselines import dark_object_subtraction


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "data"
    synthesize(out, DataConfig(n_patches=16, patch_size=64, split_buffer_px=32, seed=5))
    return out


def test_dos_removes_the_haze_of_the_darkest_pixels():
    image = np.full((32, 32, 4), 0.2, dtype=np.float32)
    image[0, :4] = [0.11, 0.08, 0.05, 0.03]  # darkest 0.4 % = dark object + haze
    corrected = dark_object_subtraction(image)
    np.testing.assert_allclose(corrected[0, 0], [0.01] * 4, atol=2e-3)
    np.testing.assert_allclose(corrected[5, 5], 0.2 - (image[0, 0] - 0.01), atol=2e-3)


def test_physics_baselines_beat_identity_in_blue(dataset: Path):
    scores = score_methods(dataset, baseline_methods(["identity", "dos", "6s"]), "test")
    means = side_by_side(scores)
    assert list(means.columns) == ["identity", "dos", "6s"]
    # Path radiance makes TOA too bright in blue: identity has a positive bias there.
    assert means.loc["bias_B2", "identity"] > 0.01
    assert means.loc["rmse_B2", "6s"] < means.loc["rmse_B2", "identity"]
    assert means.loc["rmse_B2", "dos"] < means.loc["rmse_B2", "identity"]
    assert len(scores["identity"]) == 3  # round(16 * 0.2) test patches


def test_unknown_baseline_is_named():
    with pytest.raises(ValueError, match="unknown baselines \\['fancy'\\]"):
        baseline_methods(["identity", "fancy"])


def test_report_has_tables_and_figures(dataset: Path, tmp_path: Path):
    result = evaluate(dataset, None, EvaluateConfig(), tmp_path / "report", "test")
    text = result["report"].read_text()
    for heading in ("## identity", "## dos", "## 6s", "Table 3", "![scatter](scatter.png)"):
        assert heading in text
    for name in ("histograms.png", "samples.png", "scatter.png", "comparison.csv"):
        assert (tmp_path / "report" / name).stat().st_size > 0
