"""A local stand-in for the Kubeflow Pipelines REST API (v2beta1) that records every request.

It answers what ``kfp.Client`` calls to upload a pipeline and start a run: health check,
pipeline upload (multipart), experiment lookup and creation, run creation, with bodies shaped like
the real API's, so the real client code runs unchanged against it.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeKfpApi:
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        route = path.split("?")[0]
        if route.endswith("/healthz"):
            return 200, {"commit_sha": "fake", "tag_name": "2.5.0", "multi_user": False}
        if method == "POST" and route == "/apis/v2beta1/pipelines/upload":
            return 200, {
                "pipeline_id": "pipeline-" + uuid.uuid4().hex[:8],
                "display_name": "s2ac-training",
                "created_at": "2026-11-25T00:00:00Z",
            }
        if method == "GET" and route == "/apis/v2beta1/experiments":
            return 200, {"experiments": list(self.experiments.values())}
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
            return 200, request | {"run_id": "run-" + uuid.uuid4().hex[:8], "state": "PENDING"}
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
