"""Kubeflow Pipelines from the command line: compile, run here with kfp.local, submit.

The pipeline definitions live in the source checkout (``components/``, ``pipelines/``), not in
the installed package: compiling and submitting are done from a clone; the compiled YAML carries
the component code, and the containers only need the ``s2ac`` library from the project image.
What is submitted is the checked-in compiled spec (a test keeps it equal to the source), so the
cluster runs exactly what was reviewed.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from s2ac.config import Config, PipelineConfig
from s2ac.errors import S2ACError

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPILED_DIR = REPO_ROOT / "pipelines" / "compiled"
NAMES = ("training", "tuning", "correction")
TOKEN_ENV = "KFP_TOKEN"  # bearer token for the KFP API; read from the environment, never printed


def _pipelines() -> Any:
    if not (REPO_ROOT / "pipelines" / "__init__.py").is_file():
        raise S2ACError(f"{REPO_ROOT}: no pipelines/ folder; run `s2ac pipeline` from a clone")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import pipelines

    return pipelines


def components(config: PipelineConfig) -> Any:
    """Every stage's component on ``config.image`` (``components.build``)."""
    _pipelines()  # puts the checkout on sys.path
    import components as stage_components

    return stage_components.build(config.image)


def build(name: str, config: PipelineConfig) -> Any:
    """The pipeline function ``name`` (one of :data:`NAMES`) for ``config``'s image and
    resources."""
    return _pipelines().build(name, config)


def _root_parameters(package: Path) -> dict[str, dict[str, Any]]:
    import yaml

    try:
        spec = next(iter(yaml.safe_load_all(package.read_text())))
        return dict(spec["root"]["inputDefinitions"]["parameters"])
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError) as exc:
        raise S2ACError(f"{package}: not a compiled KFP pipeline spec ({exc})") from None


def spec_inputs(package: Path) -> dict[str, str]:
    """The root parameters of a compiled spec and their types (STRING, LIST, NUMBER_DOUBLE ...)."""
    return {name: str(p.get("parameterType", "")) for name, p in _root_parameters(package).items()}


def spec_required(package: Path) -> set[str]:
    """The root parameters of a compiled spec that have no default."""
    return {name for name, p in _root_parameters(package).items() if not p.get("isOptional")}


def coerce_arguments(
    inputs: dict[str, str], arguments: dict[str, Any], required: Iterable[str] = ()
) -> dict[str, Any]:
    """Check names against the pipeline's parameters (every ``required`` one given) and make
    ``1`` a float where one is declared (YAML reads ``-P x=1`` as an integer, which KFP
    rejects)."""
    coerced = {}
    for key, value in arguments.items():
        if key not in inputs:
            raise S2ACError(f"unknown pipeline parameter {key!r}: choose from {', '.join(inputs)}")
        double = inputs[key] in ("NUMBER_DOUBLE", "Float")
        coerced[key] = float(value) if double and isinstance(value, int) else value
    missing = sorted(set(required) - set(arguments))
    if missing:
        names = ", ".join(repr(key) for key in missing)
        raise S2ACError(f"missing pipeline parameter {names}: pass -P NAME=VALUE for each")
    return coerced


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise S2ACError(f"unknown pipeline {name!r}: choose from {', '.join(NAMES)}")


def compile_pipelines(config: PipelineConfig, out_dir: Path = COMPILED_DIR) -> list[Path]:
    """Compile every pipeline to ``out_dir/<name>.yaml`` (written atomically)."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in NAMES:
        target = out_dir / f"{name}.yaml"
        temporary = out_dir / f".{name}.tmp.yaml"
        compiler.Compiler().compile(build(name, config), str(temporary))
        temporary.replace(target)
        written.append(target)
    return written


def run_with_kfp_local(
    config: Config, workdir: Path, arguments: dict[str, Any], name: str = "training"
) -> Any:
    """Run the pipeline ``name`` in this environment with kfp.local (no cluster, no containers).

    Every task runs as a subprocess with this Python; resources and GPU requests are ignored."""
    from kfp import local

    _check_name(name)
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "pipeline-root"),
        raise_on_error=True,
    )
    pipeline = build(name, config.pipeline)
    specs = pipeline.component_spec.inputs or {}
    inputs = {key: str(spec.type) for key, spec in specs.items()}
    required = {key for key, spec in specs.items() if not spec.optional}
    try:
        return pipeline(**coerce_arguments(inputs, arguments, required))
    except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # drop kfp's terminal colours
        raise S2ACError(f"{message} (task logs above; outputs in {workdir})") from None


def submit(
    host: str,
    experiment: str,
    arguments: dict[str, Any],
    name: str = "training",
    package: Path | None = None,
    insecure: bool = False,
) -> dict[str, str]:
    """Start a run of the compiled pipeline ``package`` (default: the checked-in spec of
    ``name``) on the KFP API at ``host``: the pipeline ``s2ac-<name>`` is created on the first
    submit and gets a new version on every later one (KFP refuses duplicate pipeline names).
    Names, parameters and the host are checked before any request."""
    _check_name(name)
    package = package or COMPILED_DIR / f"{name}.yaml"
    if not package.is_file():
        raise S2ACError(f"{package}: no compiled pipeline; run `s2ac pipeline compile` first")
    arguments = coerce_arguments(spec_inputs(package), arguments, spec_required(package))
    token = os.environ.get(TOKEN_ENV)
    check_host(host, bool(token), insecure)
    try:
        return _submit(host, token, experiment, arguments, name, package)
    except S2ACError:
        raise
    except Exception as exc:  # urllib3/kfp_server_api errors: one line, never the token
        problem = (str(exc).splitlines() or [""])[0][:300]
        if token:
            problem = problem.replace(token, "***")
        raise S2ACError(f"KFP API at {host}: {type(exc).__name__}: {problem}") from None


#: Hosts where plain http stays on this machine (e.g. `kubectl port-forward`).
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_host(host: str, with_token: bool, insecure: bool) -> None:
    """Refuse a malformed host, and a bearer token over plain http to another machine unless
    ``insecure``: the token would cross the network in clear text."""
    from urllib.parse import urlsplit

    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise S2ACError(f"--host {host!r}: expected http(s)://HOST[:PORT][/PATH]")
    if with_token and parts.scheme == "http" and parts.hostname not in LOOPBACK and not insecure:
        raise S2ACError(
            f"--host {host}: refusing to send the {TOKEN_ENV} bearer token over plain http "
            "(readable on the network); use https://, or --insecure if you must"
        )


def _submit(
    host: str, token: str | None, experiment: str, arguments: dict[str, Any], name: str,
    package: Path,
) -> dict[str, str]:  # fmt: skip
    import kfp

    client = kfp.Client(host=host, existing_token=token) if token else kfp.Client(host=host)
    pipeline_name = f"s2ac-{name}"
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
        version_id = versions[0].pipeline_version_id
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        version = client.upload_pipeline_version(
            str(package), pipeline_version_name=f"{pipeline_name}-{stamp}", pipeline_id=pipeline_id
        )
        version_id = version.pipeline_version_id
    experiment_id = client.create_experiment(experiment).experiment_id
    run = client.run_pipeline(
        experiment_id, f"{pipeline_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
        params=arguments, pipeline_id=pipeline_id, version_id=version_id,
    )  # fmt: skip
    if not getattr(run, "run_id", None):
        raise S2ACError(f"KFP API at {host}: the run was submitted but the answer has no run id")
    return {"pipeline_id": pipeline_id, "version_id": version_id, "run_id": run.run_id}
