"""Typed configuration of every stage, from YAML profiles plus dotted overrides.

One :class:`Config` object is built at the edge (CLI, MLproject, KFP component) and passed down;
library code never reads YAML or the environment for settings. The defaults below are the paper's
scale and live only here; ``configs/<profile>.yaml`` files override some of them (``small`` is the
demo/test scale). Resolution order, later wins: defaults, profile, ``--config FILE``, then
``-o`` overrides.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from s2ac.errors import ConfigError

_PACKAGED = Path(__file__).resolve().parent / "configs"  # wheel installs (container image)
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "configs"
DEFAULT_PROFILE = "default"
M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default. So is a boolean
    where a number is expected (pydantic would read ``train.epochs=true`` as 1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                numeric = {int, float} & set(get_args(field.annotation) or (field.annotation,))
                if (
                    numeric
                    and bool not in get_args(field.annotation)
                    and isinstance(data.get(name), bool)
                ):
                    raise ValueError(f"{name}: expected a number, got the boolean {data[name]}")
        return data


class EarthEngineConfig(_Section):
    """Earth Engine query and export (``s2ac data export``; see ``s2ac.data.earthengine``)."""

    project: str | None = None  # None: $EE_PROJECT, $GOOGLE_CLOUD_PROJECT, else the key's project
    api_url: str | None = None  # None: $EE_API_URL, else https://earthengine.googleapis.com
    service_account_key: str | None = None  # JSON key file; None: application default credentials
    # "india" (all states), state names separated by commas, or a path to a GeoJSON file
    region: str = "india"
    boundaries: str = "FAO/GAUL/2015/level1"  # first-level units: ADM0_NAME, ADM1_NAME
    country: str = "India"
    start: str = "2023-01-01"
    end: str = "2023-12-31"  # inclusive
    max_cloud_percent: float = Field(20.0, ge=0, le=100)  # scene CLOUDY_PIXEL_PERCENTAGE
    cloud_score_threshold: float = Field(0.6, ge=0, le=1)  # pixels kept where cs_cdf >= this
    n_images: int = Field(1000, ge=1)
    patches_per_side: int = Field(1, ge=1)  # each image exports a square of n x n patches
    # Patches with a larger masked (cloudy) share are dropped by Earth Engine (maskedThreshold).
    max_masked_fraction: float = Field(0.0, ge=0, le=1)
    bucket: str | None = None
    prefix: str = "s2ac/export"
    file_format: Literal["TFRecord", "GeoTIFF"] = "TFRecord"
    max_retries: int = Field(5, ge=0)  # per request, on HTTP 429 and 5xx, exponential backoff
    poll_initial_s: float = Field(10.0, gt=0)  # task polling interval, growing 1.5x per round
    poll_max_s: float = Field(120.0, gt=0)


class AtmosphereConfig(_Section):
    """How the embedded dataset's atmospheres vary (``s2ac.data.atmospheres``; equations in
    ``s2ac.physics.forward`` and ``s2ac.physics.adjacency``)."""

    # Training draws: aerosol model weights (maritime is held out for the ood split by default),
    # solar zenith range (deg); AOT550 up to DataConfig.max_aot550.
    aerosol_models: dict[str, float] = {"continental": 0.5, "urban": 0.25, "desert": 0.25}
    solar_zenith: tuple[float, float] = (15.0, 60.0)
    # Within a patch: log-normal AOT550 and water vapour fields (sigma of the log), a normal
    # elevation field (std, km); each a smooth Gaussian random field with correlation
    # exp(-d^2 / L^2) of length L (km). 0 = uniform over the patch.
    aot_log_sigma: float = Field(0.3, ge=0, le=2)
    aot_correlation_km: float = Field(5.0, gt=0)
    water_vapour_log_sigma: float = Field(0.15, ge=0, le=2)
    water_vapour_correlation_km: float = Field(10.0, gt=0)
    elevation_std_km: float = Field(0.1, ge=0, le=1)
    elevation_correlation_km: float = Field(2.0, gt=0)
    # Control nodes of the fields every this many pixels (coefficients bilinear in between).
    control_step_px: int = Field(32, ge=1)
    # The adjacency effect (6S's environment functions; needs the table's adjacency variables).
    adjacency: bool = True

    @model_validator(mode="after")
    def _check(self) -> AtmosphereConfig:
        from s2ac.physics.sixs import AEROSOL_MODELS

        unknown = set(self.aerosol_models) - set(AEROSOL_MODELS)
        if unknown or not self.aerosol_models or min(self.aerosol_models.values()) < 0:
            raise ValueError(
                f"aerosol_models must weight some of {', '.join(AEROSOL_MODELS)} with weights "
                f">= 0, got {self.aerosol_models}"
            )
        low, high = self.solar_zenith
        if not 0 <= low <= high <= 70:
            raise ValueError(f"solar_zenith range must lie within 0-70 deg, got {low}-{high}")
        return self


class DataConfig(_Section):
    out_dir: str = "out/data"
    seed: int = 0
    patch_size: int = Field(256, ge=32)
    n_patches: int = Field(1000, ge=4)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    # Out-of-distribution patches (other ground, other air), as a share of n_patches, on top of
    # them; 0 leaves the ood split out. Only evaluation and the gate read it.
    ood_fraction: float = Field(0.2, ge=0, le=1)
    split_buffer_px: int = Field(256, ge=0)
    max_aot550: float = Field(1.0, gt=0, le=1.2)  # the table reaches 1.2
    noise_std: float = Field(0.001, ge=0)
    # Share of train/val/test patches whose materials are re-mixed from measured spectra
    # (s2ac.data.spectra): cropland, desert and urban spectra the real scenes lack.
    repaint_fraction: float = Field(0.5, ge=0, le=1)
    atmosphere: AtmosphereConfig = AtmosphereConfig()
    max_nonfinite_fraction: float = Field(0.01, ge=0, le=1)
    on_missing_crs: Literal["error", "warn", "ignore"] = "error"
    earthengine: EarthEngineConfig = EarthEngineConfig()

    @model_validator(mode="after")
    def _fractions_leave_a_train_split(self) -> DataConfig:
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"test_fraction + val_fraction must be < 1 (nothing left to train on), got "
                f"{self.test_fraction} + {self.val_fraction}"
            )
        return self


class TrainConfig(_Section):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(2, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    beta_1: float = Field(0.5, ge=0, lt=1)
    # Isola et al.: generator loss = GAN + lambda_l1 * L1 (lambda 100). The paper's eq. 3 weights
    # the GAN term instead; we keep pix2pix's convention: the L1 term carries the radiometry.
    lambda_l1: float = Field(100.0, gt=0)
    generator_filters: int = Field(64, ge=4)
    # False = the paper's generator (predicts SR). True = it predicts a correction added to TOA,
    # so the untrained net is the identity baseline; converges much faster on small budgets.
    residual: bool = False
    # "unet": the paper's generator (TOA -> SR). "physics": the U-Net estimates the atmosphere
    # per pixel (AOT, water vapour, aerosol model) from TOA and the acquisition geometry, and the
    # 6S table's inverse gives SR (s2ac.model.physics_generator); needs per-sample geometry.
    generator: Literal["unet", "physics"] = "unet"
    # Physics generator only: where its atmosphere estimate starts. "climatology": the 6s
    # baseline's fixed atmosphere. "dark_object": per image, the AOT550 and aerosol model its
    # darkest pixels allow through the 6S table (s2ac.physics.retrieval), which follows the
    # physics to loads, sun angles and heights training never saw; the network learns departures.
    atmosphere_prior: Literal["climatology", "dark_object"] = "climatology"
    discriminator_filters: int = Field(64, ge=4)
    early_stopping_patience: int = Field(10, ge=1)
    figure_every: int = Field(10, ge=1)
    checkpoint_dir: str = "out/checkpoints"
    seed: int = 0
    mixed_precision: Literal["auto", "off", "mixed_float16", "mixed_bfloat16"] = "auto"
    jit_compile: bool = False  # measured slower on CPU (transposed convolutions under XLA)


class TuneConfig(_Section):
    study_name: str = "s2ac-pix2pix"
    storage: str = "sqlite:///optuna.db"
    n_trials: int = Field(20, ge=1)
    timeout_s: float | None = None
    epochs_per_trial: int = Field(10, ge=1)
    lambda_l1_range: tuple[float, float] = (1.0, 1000.0)
    learning_rate_range: tuple[float, float] = (1e-5, 1e-3)
    tune_beta_1: bool = False
    tune_generator_filters: bool = False
    sampler_seed: int = 0  # worker k seeds its TPE sampler with sampler_seed + k
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_startup_trials: int = Field(2, ge=0)  # median: no pruning before this many finished
    # First trial = the train section's values (the paper's lambda 100, lr 2e-4): the study
    # starts from a known-good point instead of a random one.
    enqueue_train_config: bool = True
    checkpoint_dir: str = "out/tune"

    @model_validator(mode="after")
    def _ranges_ordered(self) -> TuneConfig:
        for name in ("lambda_l1_range", "learning_rate_range"):
            low, high = getattr(self, name)
            if not 0 < low < high:
                raise ValueError(f"{name} must satisfy 0 < low < high, got {low}, {high}")
        return self


class EvaluateConfig(_Section):
    ssim_window: int = Field(11, ge=3)
    ssim_sigma: float = Field(1.5, gt=0)
    data_range: float = Field(1.0, gt=0)
    ssim_good: float = 0.85
    psnr_good: float = 30.0
    figures: bool = True  # composites, histograms, scatter and RMSE bars (PNG) in the report
    # Every report shows the model beside these (s2ac.evaluation.baselines); the gate's
    # best_baseline needs identity, dos, 6s and linear. oracle is skipped, and said so, when the
    # atmosphere is unknown.
    baselines: list[Literal["identity", "dos", "6s", "linear", "oracle"]] = [
        "identity", "dos", "6s", "linear", "oracle",
    ]  # fmt: skip


class GateCriterion(_Section):
    """One gate condition: ``<metric> on <split> <op> threshold``.

    The threshold is either ``bound`` (absolute) or ``factor * value(reference) + offset``, where
    ``reference`` is a baseline (identity, dos, 6s, linear, oracle), ``best_baseline`` (the best
    of identity, dos, 6s and linear on that metric and split) or ``champion`` (the current
    champion, re-scored by the gate on the same data). ``metric`` is a row of the evaluation's
    comparison table (ssim, psnr, rmse_B2, rel_rmse_B8 ...); ``{band}`` in it makes one
    criterion per band.
    """

    metric: str
    split: str = "test"
    op: Literal[">=", "<="]
    bound: float | None = None
    reference: str | None = None
    factor: float = Field(1.0, gt=0)
    offset: float = 0.0

    @model_validator(mode="after")
    def _one_threshold(self) -> GateCriterion:
        if (self.bound is None) == (self.reference is None):
            raise ValueError("give exactly one of bound (absolute) or reference (relative)")
        return self


#: The default gate (README, "The gate"). Keyed by name so one rule can be changed or dropped with
#: ``-o gate.criteria.<name>.factor=0.9`` / ``-o gate.criteria.<name>=null``.
DEFAULT_CRITERIA: dict[str, dict[str, Any]] = {
    "ssim_floor": {"metric": "ssim", "split": "test", "op": ">=", "bound": 0.90},
    "psnr_floor": {"metric": "psnr", "split": "test", "op": ">=", "bound": 30.0},
    "rmse_vs_baselines_test": {"metric": "rmse_{band}", "split": "test", "op": "<=",
                               "reference": "best_baseline", "factor": 0.8},
    "rmse_vs_baselines_ood": {"metric": "rmse_{band}", "split": "ood", "op": "<=",
                              "reference": "best_baseline", "factor": 0.8},
    "ssim_vs_champion": {"metric": "ssim", "split": "test", "op": ">=", "reference": "champion"},
    "psnr_vs_champion": {"metric": "psnr", "split": "test", "op": ">=", "reference": "champion"},
}  # fmt: skip


class GateConfig(_Section):
    """Promotion gate: every criterion must hold for ``champion`` to move (README, "The gate")."""

    criteria: dict[str, GateCriterion | None] = Field(
        default_factory=lambda: {k: GateCriterion(**v) for k, v in DEFAULT_CRITERIA.items()}
    )
    # A criterion on a split the dataset lacks (Earth Engine data has no ood yet): "fail" keeps
    # the gate honest; "skip" records it as not applicable.
    missing_split: Literal["fail", "skip"] = "fail"

    def active(self) -> dict[str, GateCriterion]:
        return {name: c for name, c in self.criteria.items() if c is not None}


class RegistryConfig(_Section):
    model_name: str = "s2ac-pix2pix"
    experiment: str = "s2ac"
    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    # Promotions are serialized by a lock (see registry.promotion_lock); a lock older than this is
    # taken to be left by a crashed process and broken.
    lock_timeout_s: float = Field(600.0, gt=0)
    # An http(s) tracking server is checked at the start of every stage that logs: attempts of
    # connect_timeout_s each, 2 s apart, then a one-line error (MLflow's own client retried for
    # 337 s and ended in five chained tracebacks).
    connect_attempts: int = Field(3, ge=1)
    connect_timeout_s: float = Field(5.0, gt=0)


class PipelineConfig(_Section):
    image: str = "ghcr.io/s2ac/s2ac:0.1.0"
    gpu_accelerator: str = "nvidia.com/gpu"
    gpu_count: int = Field(1, ge=0)
    train_cpu: str = "8"
    train_memory: str = "32G"
    io_retries: int = Field(3, ge=0)
    n_tune_workers: int = Field(4, ge=1)
    host: str | None = None
    experiment: str = "s2ac"


class PredictConfig(_Section):
    """Scene correction (``s2ac correct``, the pyfunc, the correction pipeline). The tile is the
    generator's input size; ``overlap`` px of it (at most half) are blended with the neighbours."""

    overlap: int = Field(64, ge=0)
    #: Tiles per model call: 32 is 1.2x (U-Net) to 1.9x (physics generator) faster a tile than 8
    #: on CPU here, for 0.3 GB more memory.
    batch_size: int = Field(32, ge=1)
    #: The output COG's compression. ZSTD (GDAL >= 2.3 reads it) compresses a full tile's
    #: 1.9 GB of float32 4x faster than DEFLATE for the same size; ``deflate`` for older readers.
    compression: Literal["zstd", "deflate", "lzw"] = "zstd"


class Config(_Section):
    profile: str = DEFAULT_PROFILE
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
    pipeline: PipelineConfig = PipelineConfig()
    predict: PredictConfig = PredictConfig()


def available_profiles(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Names of the YAML profiles shipped in ``configs/``."""
    return sorted(path.stem for path in config_dir.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; --config takes a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(content)}")
    return content


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``train.epochs=3`` into ``{"train": {"epochs": 3}}`` (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({problem})") from None
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif isinstance(item.get("input"), dict):  # a section's own check: its message says it
            message = item["msg"].removeprefix("Value error, ")
            field, colon, rest = message.partition(": ")
            named = colon and field.isidentifier()
            lines.append(f"{key}.{field}: {rest}" if named else f"{key}: {message}")
        else:
            lines.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return f"invalid configuration from {source}:\n  " + "\n  ".join(lines)


def load_config(
    profile: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    config_dir: Path = CONFIG_DIR,
) -> Config:
    """Build the effective configuration; every error names the offending key or file."""
    name = profile or DEFAULT_PROFILE
    profile_path = config_dir / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name) or not profile_path.is_file():
        raise ConfigError(
            f"unknown profile {name!r}: choose one of {', '.join(available_profiles(config_dir))}"
        )
    # Start from the defaults so a profile or override can change one key of a mapping (one gate
    # criterion) without restating the rest.
    raw: dict[str, Any] = _deep_merge(Config().model_dump(), _read_yaml(profile_path))
    sources = [str(profile_path)]
    if config_file is not None:
        raw = _deep_merge(raw, _read_yaml(Path(config_file)))
        sources.append(str(config_file))
    for text in overrides:
        raw = _deep_merge(raw, parse_override(text))
    if overrides:
        sources.append("overrides " + " ".join(overrides))
    raw["profile"] = name
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, " + ".join(sources))) from None


def split_overrides(text: str | None) -> list[str]:
    """``"train.epochs=3 data.earthengine.region='Kerala, Goa'"`` as a list of overrides (shell
    quoting), for callers that pass them as one string (MLproject parameters)."""
    import shlex

    return shlex.split(text or "")


def with_changes(config: M, changes: dict[str, Any]) -> M:
    """A validated copy of ``config`` (the whole config or one section) with dotted ``changes``
    (``{"tune.n_trials": 5}``). Unlike ``model_copy(update=...)``, every value is validated, and
    an error names the key."""
    raw: dict[str, Any] = config.model_dump()
    for key, value in changes.items():
        nested: dict[str, Any] = {}
        cursor = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        raw = _deep_merge(raw, nested)
    try:
        return type(config).model_validate(raw)
    except ValidationError as exc:
        source = ", ".join(f"{key}={value!r}" for key, value in changes.items())
        raise ConfigError(_describe(exc, source)) from None


def _leaves(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [line for k in keys for line in _leaves(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}={json.dumps(b)}"]


def overrides_from(config: Config, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The dotted overrides that turn ``config``'s profile into ``config``:
    ``load_config(config.profile, overrides=overrides_from(config)) == config``. This is how a
    config resolved here (profile, file, overrides) is handed to a Kubeflow run."""
    base = load_config(config.profile, config_dir=config_dir).model_dump(mode="json")
    return _leaves(base, config.model_dump(mode="json"), "")


#: ``scheme://user:password@host``: the password part of a URL.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/:@\s]*:)([^@\s/]+)(@)")


def redact_secrets(text: str) -> str:
    """``text`` with every password in a URL replaced by ``***`` (``postgresql://u:***@db``)."""
    return _URL_PASSWORD.sub(r"\1***\3", text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def dump_config(config: Config) -> str:
    """YAML text of a config, loadable again with ``--config``. Passwords in URLs (e.g. the
    Optuna ``tune.storage`` database) are written as ``***``: a config file or a log is not the
    place for them; give them again with ``-o`` where the config is used."""
    return yaml.safe_dump(_redacted(config.model_dump(mode="json")), sort_keys=False)
