"""An unreachable tracking server is a one-line error after the configured attempts."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from s2ac.config import RegistryConfig
from s2ac.registry.tracking import TrackingUnreachableError, check_server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_server_is_named_without_its_password():
    port = _free_port()
    config = RegistryConfig(tracking_uri=f"http://user:pw-42@127.0.0.1:{port}",
                            connect_attempts=1, connect_timeout_s=1.0)  # fmt: skip
    with pytest.raises(TrackingUnreachableError) as caught:
        check_server(config)
    message = str(caught.value)
    assert f"http://user:***@127.0.0.1:{port} unreachable (ConnectionError, 1 attempts" in message
    assert "pw-42" not in message


@pytest.mark.parametrize(("status", "up"), [(200, True), (401, True), (503, False)])
def test_a_server_that_answers_is_up_unless_it_fails(status: int, up: bool):
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = RegistryConfig(tracking_uri=f"http://127.0.0.1:{server.server_port}",
                            connect_attempts=1)  # fmt: skip
    try:
        if up:
            check_server(config)
        else:
            with pytest.raises(TrackingUnreachableError, match="HTTP 503"):
                check_server(config)
    finally:
        server.shutdown()


def test_local_stores_need_no_server():
    check_server(RegistryConfig(tracking_uri="sqlite:///nowhere/mlflow.db"))
