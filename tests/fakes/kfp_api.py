"""A local stand-in for the Kubeflow Pipelines REST API (v2beta1) that records every request.

It answers what ``kfp.Client`` calls to upload a pipeline or a new version of it and start a run:
health check, pipeline lookup by name, upload (multipart; a duplicate name is refused with 409 as
KFP does), version upload and listing, experiment lookup and creation, run creation, with bodies
shaped like the real API's, so the real client code runs unchanged against it.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _matches(query: dict[str, list[str]], item: dict[str, Any]) -> bool:
    """The API's ``filter`` (JSON predicates, EQUALS only) applied to one listed item."""
    if "filter" not in query:
        return True
    predicates = json.loads(query["filter"][0]).get("predicates", [])
    return all(item.get(p["key"]) == p.get("stringValue") for p in predicates)


def _conflict(message: str) -> tuple[int, dict[str, Any]]:
    # What KFP answers for a duplicate name: gRPC ALREADY_EXISTS (6) as HTTP 409.
    return 409, {"error_message": message, "code": 6, "message": message}


@dataclass
class FakeKfpApi:
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: Answer run creation with ``{}`` (a broken or impostor server).
    empty_run_answers: bool = False

    def _version(self, pipeline_id: str, name: str) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id, "pipeline_version_id": "version-" + uuid.uuid4().hex[:8],
            "display_name": name, "created_at": "2026-11-30T00:00:00Z",
        }  # fmt: skip
        self.versions[version["pipeline_version_id"]] = version
        return version

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        route, _, raw_query = path.partition("?")
        query = parse_qs(raw_query)
        if route.endswith("/healthz"):
            return 200, {"commit_sha": "fake", "tag_name": "2.5.0", "multi_user": False}
        if method == "GET" and route == "/apis/v2beta1/pipelines":
            found = [p for p in self.pipelines.values() if _matches(query, p)]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if method == "POST" and route == "/apis/v2beta1/pipelines/upload":
            name = query["name"][0]
            if any(p["display_name"] == name for p in self.pipelines.values()):
                return _conflict(f"Failed to create a pipeline: pipeline {name!r} already exists")
            pipeline = {"pipeline_id": "pipeline-" + uuid.uuid4().hex[:8], "display_name": name,
                        "created_at": "2026-11-30T00:00:00Z"}  # fmt: skip
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self._version(pipeline["pipeline_id"], name)
            return 200, pipeline
        if method == "POST" and route == "/apis/v2beta1/pipelines/upload_version":
            pipeline_id, name = query["pipelineid"][0], query["name"][0]
            if pipeline_id not in self.pipelines:
                return 404, {"error_message": f"pipeline {pipeline_id} not found", "code": 5}
            if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name
                   for v in self.versions.values()):  # fmt: skip
                return _conflict(f"pipeline version {name!r} already exists")
            return 200, self._version(pipeline_id, name)
        if (
            method == "GET"
            and route.startswith("/apis/v2beta1/pipelines/")
            and route.endswith("/versions")
        ):
            pipeline_id = route.split("/")[-2]
            found = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if method == "GET" and route == "/apis/v2beta1/experiments":
            found = [e for e in self.experiments.values() if _matches(query, e)]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if method == "POST" and route == "/apis/v2beta1/experiments":
            request = json.loads(body)
            experiment = {
                "experiment_id": "exp-" + uuid.uuid4().hex[:8],
                "display_name": request["display_name"],
            }
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if method == "POST" and route == "/apis/v2beta1/runs":
            request = json.loads(body)
            reference = request.get("pipeline_version_reference") or {}
            if reference and reference.get("pipeline_version_id") not in self.versions:
                return 404, {"error_message": f"no pipeline version {reference}", "code": 5}
            run = request | {"run_id": "run-" + uuid.uuid4().hex[:8], "state": "PENDING"}
            self.runs.append(run)
            return 200, {} if self.empty_run_answers else run
        return 404, {"error": f"no route {method} {route}"}


def start(api: FakeKfpApi) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``api`` on 127.0.0.1 in a thread; (server, base URL)."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            api.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
            status, payload = api.respond(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
