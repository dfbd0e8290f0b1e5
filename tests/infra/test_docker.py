"""Static checks of infra/Dockerfile (CPU) and infra/Dockerfile.gpu: they install the locked
project, run as non-root, use the project's Python, uv and TensorFlow versions, pass hadolint,
and the build context (.dockerignore) holds what they copy and nothing local."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from infra_checks import (
    INFRA,
    ROOT,
    default_args,
    dockerfile_violations,
    dockerignore_patterns,
    dockerignored,
    hadolint,
    locked_version,
    makefile_variable,
    parse_dockerfile,
    resolve,
    stages,
)
from packaging.specifiers import SpecifierSet

DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]


def _text(name: str) -> str:
    return (INFRA / name).read_text()


def _base_images(name: str) -> list[str]:
    instructions = parse_dockerfile(_text(name))
    args = default_args(instructions)
    return [resolve(group[0]["value"].split()[0], args) for group in stages(instructions)]


def _runs(name: str) -> str:
    return " ".join(i["value"] for i in parse_dockerfile(_text(name)) if i["instruction"] == "RUN")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_follows_the_image_rules(name: str) -> None:
    assert dockerfile_violations(_text(name)) == []


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    result = hadolint(INFRA / name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("USER 10001:10001\n", ""), "numeric non-root USER"),
        (lambda t: t.replace("USER 10001:10001", "USER root"), "numeric non-root USER"),
        (lambda t: t.replace("uv sync --frozen --no-dev --no-editable", "uv sync"), "--frozen"),
        (
            lambda t: t.replace("uv sync --frozen --no-dev --no-install-project", "pip install ."),
            "pip install bypasses the lock",
        ),
        (lambda t: t.replace("PATH=/opt/venv/bin:$PATH", "PATH=$PATH"), "/opt/venv/bin first"),
        (lambda t: t.replace('CMD ["s2ac", "--help"]', 'CMD ["bash"]'), "CMD/ENTRYPOINT"),
    ],
)
def test_rule_checker_rejects_broken_copies(edit: Callable[[str], str], expected: str) -> None:
    broken = edit(_text("Dockerfile"))
    assert broken != _text("Dockerfile"), "the edit must change the Dockerfile"
    assert any(expected in problem for problem in dockerfile_violations(broken))


def test_rule_checker_wants_the_lock_before_the_sources() -> None:
    text = _text("Dockerfile")
    moved = text.replace("COPY pyproject.toml uv.lock ./\n", "").replace(
        "COPY src/ src/\n", "COPY src/ src/\nCOPY pyproject.toml uv.lock ./\n"
    )
    assert any("before COPY src/" in p for p in dockerfile_violations(moved))


def test_hadolint_rejects_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM quay.io/someone/python\nRUN apt-get install curl\n")
    result = hadolint(careless)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3014", "DL3026"):  # untagged, no -y, untrusted registry
        assert rule in result.stdout


def test_python_version_is_the_projects() -> None:
    requires = SpecifierSet(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    cpu = re.fullmatch(r"python:(\d+\.\d+)-slim-\w+", _base_images("Dockerfile")[-1])
    assert cpu, _base_images("Dockerfile")
    gpu = default_args(parse_dockerfile(_text("Dockerfile.gpu")))["PYTHON_VERSION"]
    assert re.fullmatch(r"\d+\.\d+", gpu), gpu
    assert cpu.group(1) == gpu
    assert gpu in requires, f"Python {gpu} is outside requires-python {requires}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_uv_is_the_makefiles(name: str) -> None:
    assert f"ghcr.io/astral-sh/uv:{makefile_variable('UV_VERSION')}" in _base_images(name)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_installs_the_system_packages(name: str) -> None:
    runs = _runs(name)
    for package in makefile_variable("APT_PACKAGES").split():
        assert re.search(rf"apt-get install[^&]*\b{package}\b", runs), package
    assert "rm -rf /var/lib/apt/lists/*" in runs


@pytest.mark.parametrize("name", DOCKERFILES)
def test_project_is_installed_as_a_wheel_with_its_configs(name: str) -> None:
    # Not editable: the wheel carries configs/ as s2ac/configs (pyproject force-include),
    # which config.py looks for first.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force_include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force_include == {"configs": "s2ac/configs"}
    assert "--no-editable" in _runs(name)
    copied = {
        word
        for i in parse_dockerfile(_text(name))
        if i["instruction"] == "COPY" and "--from" not in i["value"]
        for word in i["value"].split()[:-1]
    }
    # README.md: hatchling reads it as the project's readme when it builds the wheel.
    assert copied == {"pyproject.toml", "uv.lock", "README.md", "configs/", "src/"}


def test_gpu_image_is_cuda_tensorflow_of_the_locked_version() -> None:
    base = _base_images("Dockerfile.gpu")[-1]
    assert base.startswith("nvidia/cuda:") and "-ubuntu" in base
    args = default_args(parse_dockerfile(_text("Dockerfile.gpu")))
    assert args["TF_VERSION"] == locked_version("tensorflow-cpu")
    runs = _runs("Dockerfile.gpu")
    assert '"tensorflow[and-cuda]==${TF_VERSION}"' in runs
    # Everything else from the lock: tensorflow-cpu left out, the lock as constraints.
    assert runs.count("--no-install-package tensorflow-cpu") == 2
    assert "--constraint /tmp/lock-constraints.txt" in runs
    assert "--no-emit-package tensorflow-cpu -o /tmp/lock-constraints.txt" in runs


def test_cpu_image_keeps_the_locked_tensorflow_cpu() -> None:
    assert "tensorflow" not in _runs("Dockerfile").replace("tensorflow-cpu", "")


def test_build_context_has_the_sources_and_nothing_local() -> None:
    patterns = dockerignore_patterns()
    for needed in ("pyproject.toml", "uv.lock", "README.md", "src/s2ac/cli.py", "configs"):
        assert not dockerignored(needed, patterns), needed
        assert (ROOT / needed).exists(), needed
    for local in (
        ".venv/bin/python",
        ".tools/bin/uv",
        ".git/config",
        "out/demo/data",
        "mlruns/0",
        "mlflow.db",
        "optuna.db",
        "src/s2ac/__pycache__/cli.cpython-311.pyc",
        "infra/k8s/secret.yaml",
        "infra/k8s/overlays/gke/postgres.env",
    ):
        assert dockerignored(local, patterns), local


def test_dockerignore_matcher() -> None:
    patterns = ["out", "**/__pycache__", "!out/keep"]
    assert dockerignored("out/x/y", patterns)
    assert not dockerignored("out/keep", patterns)
    assert dockerignored("a/b/__pycache__/c.pyc", patterns)
    assert not dockerignored("about/x", patterns)
