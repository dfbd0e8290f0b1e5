"""Kubeflow Pipelines from the command line: compile, run locally with kfp.local, submit.

The pipeline definitions live in the source checkout (``components/``, ``pipelines/``), not in
the installed package: compiling and submitting are done from a clone; the compiled YAML carries
the component code, and the containers only need the ``s2ac`` library from the project image.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from s2ac.config import Config, PipelineConfig
from s2ac.errors import S2ACError

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPILED_DIR = REPO_ROOT / "pipelines" / "compiled"
NAMES = ("training", "tuning")
TOKEN_ENV = "KFP_TOKEN"  # bearer token for the KFP API; read from the environment, never printed


def _pipelines() -> Any:
    if not (REPO_ROOT / "pipelines" / "__init__.py").is_file():
        raise S2ACError(f"{REPO_ROOT}: no pipelines/ folder; run `s2ac pipeline` from a clone")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import pipelines

    return pipelines


def build(name: str, config: PipelineConfig) -> Any:
    """The pipeline function ``name`` (training or tuning) for ``config``'s image and resources."""
    return _pipelines().build(name, config)


def coerce_arguments(pipeline: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """Check names against the pipeline's parameters and make ``1`` a float where one is
    declared (YAML reads ``-P learning_rate=1`` as an integer, which KFP rejects)."""
    inputs = pipeline.component_spec.inputs or {}
    coerced = {}
    for key, value in arguments.items():
        if key not in inputs:
            raise S2ACError(f"unknown pipeline parameter {key!r}: choose from {', '.join(inputs)}")
        kind = str(inputs[key].type)
        coerced[key] = float(value) if kind == "Float" and isinstance(value, int) else value
    return coerced


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


def run_local(config: Config, workdir: Path, arguments: dict[str, Any]) -> Any:
    """Run the training pipeline in this environment with kfp.local (no cluster, no containers).

    Every task runs as a subprocess with this Python; resources and GPU requests are ignored."""
    from kfp import local

    workdir.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "pipeline-root"),
        raise_on_error=True,
    )
    pipeline = build("training", config.pipeline)
    try:
        return pipeline(**coerce_arguments(pipeline, arguments))
    except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # drop kfp's terminal colours
        raise S2ACError(f"{message} (task logs above; outputs in {workdir})") from None


def submit(
    config: PipelineConfig,
    host: str,
    experiment: str,
    arguments: dict[str, Any],
    name: str = "training",
) -> dict[str, str]:
    """Upload the compiled pipeline to the KFP API at ``host`` and start a run of it."""
    import kfp

    token = os.environ.get(TOKEN_ENV)
    client = kfp.Client(host=host, existing_token=token) if token else kfp.Client(host=host)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / f"{name}.yaml"
        from kfp import compiler

        pipeline = build(name, config)
        arguments = coerce_arguments(pipeline, arguments)
        compiler.Compiler().compile(pipeline, str(package))
        uploaded = client.upload_pipeline(str(package), pipeline_name=f"s2ac-{name}")
        run = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, experiment_name=experiment,
            run_name=f"s2ac-{name}",
        )  # fmt: skip
    return {"pipeline_id": uploaded.pipeline_id, "run_id": run.run_id}
