"""Static checks of infra/k8s: kustomize renders, strict Kubernetes schemas, deployment rules
(secrets by reference, non-root, resources, probes) and the facts the pipeline relies on."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_checks import (
    K8S,
    ROOT,
    WORKLOAD_KINDS,
    Manifest,
    RenderError,
    containers,
    expand,
    find,
    locked_version,
    mutated,
    pod_spec,
    policy_violations,
    render,
    schema_errors,
    secret_refs,
)
from sqlalchemy.engine import make_url

from s2ac.config import load_config

KUSTOMIZATIONS = ["base", "overlays/gke"]
SECRET = "s2ac-postgres"


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def docs(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(K8S / request.param)


@pytest.fixture(scope="module")
def gke() -> list[Manifest]:
    return render(K8S / "overlays/gke")


def _mlflow(docs: list[Manifest]) -> dict[str, Any]:
    return next(
        c for _, c in containers(find(docs, "Deployment", "mlflow")) if c["name"] == "mlflow"
    )


def _postgres(docs: list[Manifest]) -> dict[str, Any]:
    return next(c for _, c in containers(find(docs, "StatefulSet", "postgres")))


def _flag(container: dict[str, Any], name: str) -> str | None:
    for arg in container.get("args", []):
        if arg == name:
            return ""
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --- every file parses, every kustomization renders and passes the schemas -------------------


def test_every_yaml_file_parses() -> None:
    files = sorted((ROOT / "infra").rglob("*.yaml"))
    assert len(files) >= 9
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_renders_the_stack(docs: list[Manifest]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name'].split('-')[0]}" for d in docs)
    assert kinds == [
        "ConfigMap/mlflow",
        "ConfigMap/postgres",
        "Deployment/mlflow",
        "Namespace/s2ac",
        "Service/mlflow",
        "Service/postgres",
        "ServiceAccount/mlflow",
        "StatefulSet/postgres",
    ]
    assert all(d["metadata"].get("namespace") == "s2ac" for d in docs if d["kind"] != "Namespace")


def test_strict_kubernetes_schemas(docs: list[Manifest]) -> None:
    assert schema_errors(docs) == []


def test_schema_check_rejects_broken_manifests(gke: list[Manifest]) -> None:
    def typo(doc: Manifest) -> None:
        container = pod_spec(doc)["containers"][0]
        container["readinesProbe"] = container.pop("readinessProbe")

    def wrong_type(doc: Manifest) -> None:
        doc["spec"]["replicas"] = "one"

    for change, expected in [(typo, "readinesProbe"), (wrong_type, "'one' is not of type")]:
        errors = schema_errors(mutated(gke, "Deployment", "mlflow", change))
        assert len(errors) == 2, errors  # one per Kubernetes version checked
        assert all(expected in error for error in errors)


def test_kustomize_errors_surface(tmp_path: Path) -> None:
    broken = tmp_path / "base"
    shutil.copytree(K8S / "base", broken)
    (broken / "postgres-service.yaml").unlink()
    with pytest.raises(RenderError, match=r"postgres-service\.yaml"):
        render(broken)


# --- deployment rules --------------------------------------------------------------------------


def test_deployment_rules_hold(docs: list[Manifest]) -> None:
    assert policy_violations(docs) == []


def _drop_limits(doc: Manifest) -> None:
    del pod_spec(doc)["containers"][0]["resources"]["limits"]


def _drop_init_requests(doc: Manifest) -> None:
    del pod_spec(doc)["initContainers"][0]["resources"]["requests"]


def _drop_liveness(doc: Manifest) -> None:
    del pod_spec(doc)["containers"][0]["livenessProbe"]


def _run_as_root(doc: Manifest) -> None:
    pod_spec(doc)["securityContext"].update(runAsNonRoot=False, runAsUser=0)


def _literal_password(doc: Manifest) -> None:
    pod_spec(doc)["containers"][0]["env"][0] = {"name": "PGPASSWORD", "value": "hunter2"}


def _password_in_uri(doc: Manifest) -> None:
    args = pod_spec(doc)["containers"][0]["args"]
    args[args.index("--backend-store-uri=postgresql+psycopg://mlflow@postgres:5432/mlflow")] = (
        "--backend-store-uri=postgresql+psycopg://mlflow:hunter2@postgres:5432/mlflow"
    )


def _escalation(doc: Manifest) -> None:
    pod_spec(doc)["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _latest_image(doc: Manifest) -> None:
    pod_spec(doc)["containers"][0]["image"] = "ghcr.io/mlflow/mlflow:latest"


@pytest.mark.parametrize(
    ("kind", "name", "change", "expected"),
    [
        ("Deployment", "mlflow", _drop_limits, "mlflow: no resources.limits.cpu"),
        ("Deployment", "mlflow", _drop_init_requests, "wait-for-postgres: no resources.requests"),
        ("StatefulSet", "postgres", _drop_liveness, "postgres: no livenessProbe"),
        ("StatefulSet", "postgres", _run_as_root, "runAsNonRoot is not true"),
        ("Deployment", "mlflow", _literal_password, "PGPASSWORD has a literal value"),
        ("Deployment", "mlflow", _password_in_uri, "credentials in a URI on the command line"),
        ("Deployment", "mlflow", _escalation, "allowPrivilegeEscalation is not false"),
        ("Deployment", "mlflow", _latest_image, "has no pinned tag"),
    ],
)
def test_rule_checker_rejects_broken_copies(
    gke: list[Manifest], kind: str, name: str, change: Any, expected: str
) -> None:
    problems = policy_violations(mutated(gke, kind, name, change))
    assert any(expected in problem for problem in problems), problems


def test_shipping_a_secret_is_rejected(gke: list[Manifest]) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": "s2ac"},
        "stringData": {"mlflow-password": "hunter2"},
    }
    assert any("Secret objects are not shipped" in p for p in policy_violations([*gke, secret]))


def test_secrets_only_by_reference(docs: list[Manifest]) -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert example["metadata"]["name"] == SECRET
    assert set(example["stringData"].values()) == {""}, "the example must hold no values"
    assert secret_refs(docs) == {(SECRET, key) for key in example["stringData"]}
    for path in K8S.rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        assert "secretGenerator" not in kustomization, path
        assert not any("secret" in r for r in kustomization.get("resources", [])), path


def test_pods_run_non_root_under_restricted_pod_security(docs: list[Manifest]) -> None:
    namespace = find(docs, "Namespace", "s2ac")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        context = pod_spec(workload)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] > 0


# --- MLflow server --------------------------------------------------------------------------


def test_mlflow_uses_postgres_backend_without_password(docs: list[Manifest]) -> None:
    mlflow = _mlflow(docs)
    backend = _flag(mlflow, "--backend-store-uri")
    assert backend == "postgresql+psycopg://mlflow@postgres:5432/mlflow"
    password = next(v for v in mlflow["env"] if v["name"] == "PGPASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "mlflow-password"}
    # The backend host and port are the Postgres service's.
    service = find(docs, "Service", "postgres")
    assert service["spec"]["ports"][0]["port"] == 5432


def test_mlflow_proxies_artifacts_to_gcs(docs: list[Manifest]) -> None:
    mlflow = _mlflow(docs)
    assert _flag(mlflow, "--serve-artifacts") == ""
    destination = expand(docs, mlflow, _flag(mlflow, "--artifacts-destination") or "")
    assert re.fullmatch(r"gs://[a-zA-Z0-9_.-]+/mlartifacts", destination), destination


def test_gke_overlay_replaces_every_placeholder(gke: list[Manifest]) -> None:
    text = yaml.safe_dump_all(gke)
    assert "PROJECT_ID" not in text
    account = find(gke, "ServiceAccount", "mlflow")
    annotation = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert annotation.endswith(".iam.gserviceaccount.com")
    claim = find(gke, "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"]


def test_mlflow_uses_the_workload_identity_service_account(docs: list[Manifest]) -> None:
    spec = pod_spec(find(docs, "Deployment", "mlflow"))
    account = find(docs, "ServiceAccount", spec["serviceAccountName"])
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]


def test_mlflow_server_matches_locked_client() -> None:
    deployment = (K8S / "base/mlflow-deployment.yaml").read_text()
    image = re.search(r"image: (ghcr\.io/mlflow/mlflow:\S+)", deployment)
    assert image and image.group(1) == f"ghcr.io/mlflow/mlflow:v{locked_version('mlflow')}-full"


def test_mlflow_accepts_in_cluster_and_port_forward_hosts(docs: list[Manifest]) -> None:
    mlflow = _mlflow(docs)
    hosts = expand(docs, mlflow, _flag(mlflow, "--allowed-hosts") or "").split(",")
    for host in ("mlflow.s2ac.svc.cluster.local:5000", "mlflow:5000", "localhost:5000"):
        assert any(re.fullmatch(re.escape(h).replace(r"\*", ".*"), host) for h in hosts), host
    assert "*" not in hosts


def test_mlflow_probes_health(docs: list[Manifest]) -> None:
    mlflow = _mlflow(docs)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert mlflow[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert any(p["name"] == "http" for p in mlflow["ports"])


# --- Postgres: MLflow backend and Optuna storage ----------------------------------------------


def test_postgres_creates_mlflow_and_optuna_databases(docs: list[Manifest]) -> None:
    postgres = _postgres(docs)
    statefulset = find(docs, "StatefulSet", "postgres")
    volume = next(v for v in pod_spec(statefulset)["volumes"] if v["name"] == "initdb")
    mount = next(m for m in postgres["volumeMounts"] if m["name"] == "initdb")
    assert mount["mountPath"] == "/docker-entrypoint-initdb.d"
    assert volume["configMap"]["defaultMode"] == 0o555
    script = next(iter(find(docs, "ConfigMap", "postgres-initdb")["data"].values()))
    for database in ("mlflow", "optuna"):
        assert f"CREATE DATABASE {database} OWNER {database};" in script
        assert f"CREATE ROLE {database} LOGIN PASSWORD :'{database}_password';" in script
    # Each password the script reads comes from the Secret.
    env = {v["name"]: v for v in postgres["env"]}
    variables = re.findall(r'"\$(\w+_PASSWORD)"', script)
    assert variables == ["MLFLOW_DB_PASSWORD", "OPTUNA_DB_PASSWORD"]
    for variable in [*variables, "POSTGRES_PASSWORD"]:
        assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == SECRET


def test_postgres_probes_and_storage(docs: list[Manifest]) -> None:
    postgres = _postgres(docs)
    for probe in ("readinessProbe", "livenessProbe"):
        assert postgres[probe]["exec"]["command"][0] == "pg_isready"
    statefulset = find(docs, "StatefulSet", "postgres")
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"]
    data = next(m for m in postgres["volumeMounts"] if m["name"] == "data")
    pgdata = next(v["value"] for v in postgres["env"] if v["name"] == "PGDATA")
    assert pgdata.startswith(data["mountPath"] + "/")


def test_services_select_their_pods(docs: list[Manifest]) -> None:
    for name, kind in (("mlflow", "Deployment"), ("postgres", "StatefulSet")):
        service = find(docs, "Service", name)
        workload = find(docs, kind, name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["name"] for _, c in containers(workload, init=False) for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


# --- the README's pipeline settings match the services and the config schema ------------------


def test_readme_pipeline_settings_reach_the_services(docs: list[Manifest], tmp_path: Path) -> None:
    readme = (ROOT / "infra/README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL) if "tune:" in b)
    (tmp_path / "cluster.yaml").write_text(block)
    config = load_config(config_file=tmp_path / "cluster.yaml")

    mlflow = find(docs, "Service", "mlflow")
    port = mlflow["spec"]["ports"][0]["port"]
    assert config.registry.tracking_uri == f"http://mlflow.s2ac.svc.cluster.local:{port}"

    storage = make_url(config.tune.storage)
    assert storage.password is None, "the password comes from PGPASSWORD, never the URL"
    assert (storage.host, storage.port) == ("postgres.s2ac.svc.cluster.local", 5432)
    assert (storage.username, storage.database) == ("optuna", "optuna")
    storage.get_dialect().import_dbapi()  # the project's lock has the driver

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert config.pipeline.image == f"ghcr.io/s2ac/s2ac:{version}"
