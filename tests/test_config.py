from pathlib import Path

import pytest

from s2ac.config import (
    Config,
    available_profiles,
    dump_config,
    load_config,
    overrides_from,
    parse_override,
    split_overrides,
    with_changes,
)
from s2ac.errors import ConfigError


def test_default_profile_is_paper_scale():
    config = load_config("default")
    assert config == Config(profile="default")
    train = config.train
    assert (train.batch_size, train.epochs, train.learning_rate) == (2, 100, 2e-4)
    assert config.data.n_patches == 1000 and config.data.patch_size == 256
    assert config.data.test_fraction == 0.2
    assert config.registry.model_name == "s2ac-pix2pix"


def test_small_profile_overrides_some_keys():
    config = load_config("small")
    assert config.profile == "small"
    assert config.train.epochs == 3 and config.train.generator_filters == 16
    assert config.train.batch_size == 2  # untouched keys keep the paper's value
    assert {"default", "small"} <= set(available_profiles())


def test_overrides_file_then_dotted(tmp_path: Path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  epochs: 7\n  lambda_l1: 50\n")
    config = load_config("small", extra, ["train.epochs=9", "tune.lambda_l1_range=[1, 10]"])
    assert config.train.epochs == 9
    assert config.train.lambda_l1 == 50
    assert config.tune.lambda_l1_range == (1.0, 10.0)


def test_dump_then_load_round_trip(tmp_path: Path):
    config = load_config("small", overrides=["data.seed=4"])
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_config(config))
    assert load_config("small", path) == config


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochz=3", "train.epochz: unknown key"),
        ("trian.epochs=3", "trian: unknown key"),
        ("train.epochs=three", "train.epochs"),
        ("train.batch_size=0", "train.batch_size"),
        ("data.earthengine.file_format=NetCDF", "data.earthengine.file_format"),
        ("tune.learning_rate_range=[1e-3, 1e-5]", "learning_rate_range"),
        ("train.epochs=true", "train.epochs: expected a number, got the boolean True"),
        ("train.learning_rate=false", "train.learning_rate: expected a number"),
        ("data.test_fraction=0.95", "data: test_fraction + val_fraction must be < 1"),
        ("train.epochs=[1", "override 'train.epochs=[1': the value is not valid YAML"),
    ],
)
def test_bad_keys_and_types_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config("small", overrides=[override])
    assert key in str(info.value)


def test_bad_profile_file_and_override_syntax(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'.*default"):
        load_config("huge")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("small", tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config("small", broken)
    with pytest.raises(ConfigError, match="is a directory; --config takes a YAML file"):
        load_config("small", tmp_path)
    for escape in ("../configs/small", "/etc/passwd", "small/../small"):
        with pytest.raises(ConfigError, match="unknown profile"):
            load_config(escape)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.epochs")
    assert parse_override("a.b.c=1.5") == {"a": {"b": {"c": 1.5}}}


def test_every_change_is_validated_and_names_the_key():
    config = load_config("small")
    with pytest.raises(ConfigError, match=r"tune\.n_trials: Input should be greater than"):
        with_changes(config, {"tune.n_trials": 0})
    with pytest.raises(ConfigError, match=r"train\.lambda_l11: unknown key"):
        with_changes(config, {"train.lambda_l11": 5})
    changed = with_changes(config, {"tune.n_trials": 4, "train.lambda_l1": 50})
    assert (changed.tune.n_trials, changed.train.lambda_l1) == (4, 50.0)
    assert config.tune.n_trials == 3  # the input is left alone


def test_overrides_from_recreate_the_config_from_its_profile(tmp_path: Path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  lambda_l1: 50\ngate:\n  criteria:\n    ssim_vs_champion: null\n")
    config = load_config("small", extra, ["tune.lambda_l1_range=[2, 20]", "data.seed=3"])
    overrides = overrides_from(config)
    assert load_config("small", overrides=overrides) == config
    assert (
        "train.lambda_l1=50.0" in overrides and "gate.criteria.ssim_vs_champion=null" in overrides
    )
    assert overrides_from(load_config("small")) == []
    assert split_overrides("a.b=1 c.d='x y'") == ["a.b=1", "c.d=x y"]


def test_passwords_in_urls_never_reach_a_written_config():
    from s2ac.config import dump_config, redact_secrets

    url = "postgresql+psycopg://optuna:s3cr%3At@db.internal:5432/optuna"
    config = load_config("small", overrides=[f"tune.storage={url}"])
    text = dump_config(config)
    assert "s3cr" not in text and "postgresql+psycopg://optuna:***@db.internal:5432/optuna" in text
    assert redact_secrets("sqlite:///out/x.db") == "sqlite:///out/x.db"
    assert (
        redact_secrets("see https://u:p@h/x and gs://b/k") == "see https://u:***@h/x and gs://b/k"
    )
