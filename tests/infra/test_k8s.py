"""Static checks of infra/k8s: kustomize renders, strict Kubernetes schemas, deployment rules
(secrets by reference, non-root, resources, probes, NetworkPolicies, MLflow login) and the facts
the pipeline relies on."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import importlib.util
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
    selects,
)
from sqlalchemy.engine import make_url

from s2ac.config import load_config

KUSTOMIZATIONS = ["base", "overlays/gke"]
SECRET = "s2ac-postgres"
# The installed mlflow's basic-auth app (read as files: importing it needs Flask-WTF, which only
# the server image has).
MLFLOW_AUTH = Path(importlib.util.find_spec("mlflow").origin).parent / "server/auth"
KUBEFLOW = {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}


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
    # Generated ConfigMaps' names end in a content hash.
    names = (re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]) for d in docs)
    kinds = sorted(f"{d['kind']}/{name}" for d, name in zip(docs, names, strict=True))
    assert kinds == [
        "ConfigMap/mlflow",
        "ConfigMap/mlflow-auth",
        "ConfigMap/postgres-initdb",
        "Deployment/mlflow",
        "Namespace/s2ac",
        "NetworkPolicy/default-deny-ingress",
        "NetworkPolicy/mlflow",
        "NetworkPolicy/postgres",
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


def _no_login(doc: Manifest) -> None:
    pod_spec(doc)["containers"][0]["args"].remove("--app-name=basic-auth")


def _literal_admin_password(doc: Manifest) -> None:
    env = pod_spec(doc)["containers"][0]["env"]
    [index] = [i for i, var in enumerate(env) if var["name"] == "MLFLOW_AUTH_ADMIN_PASSWORD"]
    env[index] = {"name": "MLFLOW_AUTH_ADMIN_PASSWORD", "value": "hunter2hunter2"}


def _admin_password_in_ini(doc: Manifest) -> None:
    doc["data"]["basic_auth.ini"] += "admin_password = hunter2hunter2\n"


def _open_to_every_source(doc: Manifest) -> None:
    del doc["spec"]["ingress"][0]["from"]


def _open_to_every_port(doc: Manifest) -> None:
    del doc["spec"]["ingress"][0]["ports"]


def _any_namespace(doc: Manifest) -> None:
    doc["spec"]["ingress"][0]["from"][1]["namespaceSelector"] = {}


def _any_address(doc: Manifest) -> None:
    doc["spec"]["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})


def _wrong_port(doc: Manifest) -> None:
    doc["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": 8080}]


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
        ("Deployment", "mlflow", _no_login, "mlflow server without authentication"),
        ("Deployment", "mlflow", _literal_admin_password, "ADMIN_PASSWORD has a literal value"),
        ("ConfigMap", "mlflow-auth", _admin_password_in_ini, "sets admin_password to a literal"),
        ("NetworkPolicy", "mlflow", _open_to_every_source, "no `from`, admits every source"),
        ("NetworkPolicy", "postgres", _open_to_every_port, "no `ports`, admits every port"),
        ("NetworkPolicy", "postgres", _any_namespace, "admits pods of every namespace"),
        ("NetworkPolicy", "mlflow", _any_address, "admits every address"),
        ("NetworkPolicy", "mlflow", _wrong_port, "Service/mlflow: no NetworkPolicy admits"),
    ],
)
def test_rule_checker_rejects_broken_copies(
    gke: list[Manifest], kind: str, name: str, change: Any, expected: str
) -> None:
    problems = policy_violations(mutated(gke, kind, name, change))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("default-deny-ingress", "namespace 's2ac': no default-deny ingress NetworkPolicy"),
        ("postgres", "Service/postgres: no NetworkPolicy admits StatefulSet/postgres"),
        ("mlflow", "Service/mlflow: no NetworkPolicy admits Deployment/mlflow"),
    ],
)
def test_removing_a_network_policy_is_rejected(
    gke: list[Manifest], name: str, expected: str
) -> None:
    policy = find(gke, "NetworkPolicy", name)
    problems = policy_violations([doc for doc in gke if doc is not policy])
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


# --- NetworkPolicies: ingress denied by default, then only each service's clients ------------


def _ingress_rules(docs: list[Manifest], workload: Manifest) -> list[dict[str, Any]]:
    """Every ingress rule of every NetworkPolicy that selects the pods of ``workload``."""
    labels = workload["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    selecting = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
    return [rule for policy in selecting for rule in policy["spec"].get("ingress", [])]


def _container_port(workload: Manifest, name: str) -> int:
    ports = [p for _, c in containers(workload, init=False) for p in c.get("ports", [])]
    return next(p["containerPort"] for p in ports if p["name"] == name)


def test_ingress_is_denied_by_default(docs: list[Manifest]) -> None:
    policy = find(docs, "NetworkPolicy", "default-deny-ingress")
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert policy["metadata"]["namespace"] == "s2ac"


def test_postgres_admits_only_mlflow_and_the_labelled_kubeflow_pods(docs: list[Manifest]) -> None:
    postgres = find(docs, "StatefulSet", "postgres")
    mlflow = find(docs, "Deployment", "mlflow")
    assert _ingress_rules(docs, postgres) == [
        {
            "from": [
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}},
                # One peer, both selectors: labelled pods in the kubeflow namespace only.
                {
                    "namespaceSelector": KUBEFLOW,
                    "podSelector": {"matchLabels": {"s2ac.io/database-client": "true"}},
                },
            ],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]
    assert _container_port(postgres, "postgres") == 5432
    # The peer without a namespaceSelector (this namespace) is the MLflow server's pods, and
    # their labels are the ones the Deployment gives them.
    [rule] = _ingress_rules(docs, postgres)
    in_namespace = rule["from"][0]["podSelector"]
    assert selects(in_namespace, mlflow["spec"]["template"]["metadata"]["labels"])
    assert not selects(in_namespace, postgres["spec"]["template"]["metadata"]["labels"])


def test_mlflow_admits_its_namespace_and_kubeflow_on_5000_only(docs: list[Manifest]) -> None:
    mlflow = find(docs, "Deployment", "mlflow")
    assert _ingress_rules(docs, mlflow) == [
        {
            "from": [{"podSelector": {}}, {"namespaceSelector": KUBEFLOW}],
            "ports": [{"protocol": "TCP", "port": 5000}],
        }
    ]
    assert _container_port(mlflow, "http") == 5000


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


# --- MLflow login: the basic-auth app, configured from the Secret ------------------------------


def _auth_settings(docs: list[Manifest]) -> configparser.SectionProxy:
    """The [mlflow] section of the file MLFLOW_AUTH_CONFIG_PATH names, followed through the
    volume mount into its ConfigMap."""
    mlflow = _mlflow(docs)
    path = next(v["value"] for v in mlflow["env"] if v["name"] == "MLFLOW_AUTH_CONFIG_PATH")
    mount = next(m for m in mlflow["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volumes = pod_spec(find(docs, "Deployment", "mlflow"))["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    config_map = find(docs, "ConfigMap", "mlflow-auth")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    parser = configparser.ConfigParser()
    parser.read_string(config_map["data"][path.removeprefix(mount["mountPath"] + "/")])
    return parser["mlflow"]


def _installed_permissions() -> dict[str, dict[str, Any]]:
    """Name -> fields of every ``Permission(...)`` the installed mlflow defines."""
    tree = ast.parse((MLFLOW_AUTH / "permissions.py").read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Permission"
    ]
    fields = [{k.arg: ast.literal_eval(k.value) for k in call.keywords} for call in calls]
    return {f["name"]: f for f in fields}


def test_mlflow_requires_a_login(docs: list[Manifest]) -> None:
    mlflow = _mlflow(docs)
    assert mlflow["command"] == ["mlflow", "server"]
    assert _flag(mlflow, "--app-name") == "basic-auth"
    apps = importlib.metadata.entry_points(group="mlflow.app")
    assert "basic-auth" in apps.names
    settings = _auth_settings(docs)
    # Only settings the installed mlflow knows (its basic_auth.ini lists them, some commented).
    shipped = (MLFLOW_AUTH / "basic_auth.ini").read_text()
    known = set(re.findall(r"^#?\s*(\w+)\s*=", shipped, re.MULTILINE))
    assert {"default_permission", "database_uri", "admin_username"} <= set(settings) <= known
    # Authenticated users get nothing they were not granted (anonymous requests get a 401).
    permission = _installed_permissions()[settings["default_permission"]]
    assert not any(permission[f"can_{what}"] for what in ("read", "use", "update", "manage"))
    assert settings.getboolean("grant_default_workspace_access") is False
    assert settings["authorization_function"].endswith(":authenticate_request_basic_auth")
    # The admin password and the CSRF key come from the Secret, under the names MLflow reads.
    assert "admin_password" not in settings
    env = {var["name"]: var for var in mlflow["env"]}
    for variable, key in (
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "mlflow-admin-password"),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", "mlflow-flask-secret-key"),
    ):
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key}
    server = (MLFLOW_AUTH / "config.py").read_text() + (MLFLOW_AUTH / "__init__.py").read_text()
    for variable in ("MLFLOW_AUTH_CONFIG_PATH", *(v for v in env if v.startswith("MLFLOW_AUTH"))):
        assert variable in server, variable
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in server


def test_mlflow_auth_database_is_postgres_without_password(docs: list[Manifest]) -> None:
    url = make_url(_auth_settings(docs)["database_uri"])
    backend = make_url(_flag(_mlflow(docs), "--backend-store-uri") or "")
    assert url.password is None, "the password comes from PGPASSWORD, never the URL"
    assert (url.drivername, url.host, url.port) == (backend.drivername, "postgres", 5432)
    # Role mlflow (PGPASSWORD: mlflow-password) owns it; users and grants apart from the runs.
    assert url.username == backend.username == "mlflow"
    assert url.database not in (None, backend.database)
    script = next(iter(find(docs, "ConfigMap", "postgres-initdb")["data"].values()))
    assert f"CREATE DATABASE {url.database} OWNER mlflow;" in script


def test_no_literal_password_in_the_rendered_manifests(docs: list[Manifest]) -> None:
    text = yaml.safe_dump_all(docs)
    assert "admin_password" not in text
    assert "password1234" not in text  # the admin password older mlflow versions shipped
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        for _, container in containers(workload):
            for var in container.get("env", []):
                if re.search(r"PASSWORD|SECRET", var["name"]):
                    assert "value" not in var, var["name"]
                    assert var["valueFrom"]["secretKeyRef"]["name"] == SECRET
    for config_map in (d for d in docs if d["kind"] == "ConfigMap"):
        for key, value in config_map["data"].items():
            literal = re.search(r"(?im)^\s*[\w.-]*password\s*[=:]\s*[^\s\"'$]", value)
            assert not literal, f"{key}: {literal.group(0) if literal else ''}"


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
