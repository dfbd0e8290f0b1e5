"""Tests of s2ac.io.storage on local paths and on gs:// URIs served by gcp-storage-emulator."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from google.api_core import exceptions as api_exceptions

from s2ac.errors import BucketNotFoundError, CredentialsError, ObjectNotFoundError, StorageError
from s2ac.io import storage
from s2ac.io.storage import RetryPolicy

if TYPE_CHECKING:
    from conftest import GcsEmulator

FAST_RETRY = RetryPolicy(initial=0.01, maximum=0.02, multiplier=2.0, timeout=5.0)
service = pytest.mark.service


@pytest.fixture
def fast_retry() -> Iterator[RetryPolicy]:
    previous = storage.set_retry_policy(FAST_RETRY)
    yield FAST_RETRY
    storage.set_retry_policy(previous)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- URIs ---------------------------------------------------------------------------------------


def test_split_gcs_and_is_gcs() -> None:
    assert storage.split_gcs("gs://bucket/a/b.tif") == ("bucket", "a/b.tif")
    assert storage.split_gcs("gs://bucket") == ("bucket", "")
    assert storage.is_gcs("gs://bucket/k") and not storage.is_gcs("/data/gs/k")
    for bad in ("gs://", "gs:///x", "/local/path"):
        with pytest.raises(ValueError):
            storage.split_gcs(bad)
    with pytest.raises(ValueError, match="pathlib"):
        storage.is_gcs(Path("gs://bucket/k"))  # Path collapses it to gs:/bucket/k


# --- local --------------------------------------------------------------------------------------


def test_local_round_trip_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "x" / "y" / "data.bin"
    storage.write_bytes(target, b"\x00\x01abc")
    assert storage.read_bytes(str(target)) == b"\x00\x01abc"
    assert storage.exists(target) and not storage.exists(tmp_path / "nope.bin")
    storage.copy(target, tmp_path / "copy" / "data.bin")
    assert (tmp_path / "copy" / "data.bin").read_bytes() == b"\x00\x01abc"
    storage.delete(target)
    assert not target.exists()
    storage.delete(target, missing_ok=True)
    with pytest.raises(ObjectNotFoundError, match=re.escape(str(target))):
        storage.delete(target)


def test_local_missing_file_raises_object_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    with pytest.raises(ObjectNotFoundError, match=re.escape(f"{missing}: file not found")):
        storage.read_bytes(missing)
    with pytest.raises(ObjectNotFoundError), storage.open_read(missing):
        pass


def test_local_failed_streaming_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.bin"
    with pytest.raises(RuntimeError, match="boom"), storage.open_write(target) as f:
        f.write(b"partial" * 1000)
        raise RuntimeError("boom")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temp file is gone too

    target.write_bytes(b"old")  # a failed rewrite keeps the previous content
    with pytest.raises(RuntimeError), storage.open_write(target) as f:
        f.write(b"new")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result.bin"]


def test_local_listing_uses_string_prefixes(tmp_path: Path) -> None:
    for key in ("a/1", "a/2", "a/b/3", "ab/4"):
        storage.write_bytes(tmp_path / key, b"x")
    root = str(tmp_path)
    assert storage.list_uris(f"{root}/a/") == [f"{root}/a/1", f"{root}/a/2", f"{root}/a/b/3"]
    assert storage.list_uris(f"{root}/a/", recursive=False) == [f"{root}/a/1", f"{root}/a/2"]
    assert storage.list_uris(f"{root}/a") == [
        f"{root}/a/1",
        f"{root}/a/2",
        f"{root}/a/b/3",
        f"{root}/ab/4",
    ]
    assert storage.list_uris(f"{root}/zzz/") == []


# --- Cloud Storage (emulator) -------------------------------------------------------------------


@service
def test_gcs_bytes_round_trip(gcs_prefix: str) -> None:
    uri = gcs_prefix + "dir/data.bin"
    payload = bytes(range(256)) * 40
    assert not storage.exists(uri)
    storage.write_bytes(uri, payload)
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == payload
    storage.write_bytes(uri, b"replaced")
    assert storage.read_bytes(uri) == b"replaced"
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri, missing_ok=True)


@service
def test_gcs_streaming_write_then_read(gcs_prefix: str) -> None:
    uri = gcs_prefix + "stream.bin"
    chunks = [bytes([i]) * 100_003 for i in range(30)]  # ~3 MB in odd-sized writes
    with storage.open_write(uri) as f:
        for chunk in chunks:
            f.write(chunk)
    expected = b"".join(chunks)
    with storage.open_read(uri) as f:
        head = f.read(10)
        rest = f.read()
    assert head + rest == expected
    assert len(head + rest) == 3_000_090


@service
def test_gcs_failed_streaming_write_creates_no_object(gcs_prefix: str) -> None:
    uri = gcs_prefix + "never.bin"
    with pytest.raises(RuntimeError), storage.open_write(uri) as f:
        f.write(b"x" * 1000)
        raise RuntimeError("boom")
    assert not storage.exists(uri)
    assert f.closed  # else garbage collection would call close() and upload it after all


@service
def test_gcs_52mb_upload_download_round_trip(gcs_prefix: str, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(np.random.default_rng(20240611).bytes(52 * 1024 * 1024))
    uri = gcs_prefix + "big/big.bin"
    storage.upload(source, uri)
    target = tmp_path / "down" / "nested" / "big.bin"
    storage.download(uri, target)
    assert target.stat().st_size == 54_525_952
    assert sha256_file(target) == sha256_file(source)
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]  # no temp file left

    copied = gcs_prefix + "big/copy.bin"
    storage.copy(uri, copied)  # server-side rewrite
    with storage.open_read(copied) as f:
        digest = hashlib.sha256()
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == sha256_file(source)


@service
def test_gcs_listing_recursive_and_not(gcs_prefix: str) -> None:
    for key in ("a/1", "a/2", "a/b/3", "ab/4"):
        storage.write_bytes(gcs_prefix + key, key.encode())
    p = gcs_prefix
    assert storage.list_uris(p + "a/") == [p + "a/1", p + "a/2", p + "a/b/3"]
    assert storage.list_uris(p + "a/", recursive=False) == [p + "a/1", p + "a/2"]
    assert storage.list_uris(p + "a") == [p + "a/1", p + "a/2", p + "a/b/3", p + "ab/4"]
    assert storage.list_uris(p + "a", recursive=False) == []  # only a/ and ab/ "folders"
    assert storage.list_uris(p + "zzz/") == []


@service
def test_gcs_missing_object_and_missing_bucket(gcs_prefix: str, tmp_path: Path) -> None:
    missing = gcs_prefix + "missing.bin"
    for action in (
        lambda: storage.read_bytes(missing),
        lambda: storage.download(missing, tmp_path / "x.bin"),
        lambda: storage.delete(missing),
        lambda: storage.copy(missing, gcs_prefix + "copy.bin"),
    ):
        with pytest.raises(ObjectNotFoundError) as info:
            action()
        assert str(info.value) == f"{missing}: object not found"
    with pytest.raises(ObjectNotFoundError), storage.open_read(missing):
        pass
    assert not (tmp_path / "x.bin").exists()

    expected = "gs://no-such-bucket-s2ac: bucket not found (create it or check the name/project)"
    for action in (
        lambda: storage.read_bytes("gs://no-such-bucket-s2ac/k.bin"),
        lambda: storage.write_bytes("gs://no-such-bucket-s2ac/k.bin", b"x"),
        lambda: storage.list_uris("gs://no-such-bucket-s2ac/"),
    ):
        with pytest.raises(BucketNotFoundError) as bucket_info:
            action()
        assert str(bucket_info.value) == expected
    with pytest.raises(BucketNotFoundError), storage.open_write("gs://no-such-bucket-s2ac/k") as f:
        f.write(b"x")  # resumable uploads fail with another exception type (InvalidResponse)
    assert f.closed  # a failed close() must not leave a writer that GC would close (re-upload)
    assert not storage.exists("gs://no-such-bucket-s2ac/k.bin")


@pytest.mark.parametrize("key_file", ["missing", "malformed"])
def test_missing_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_file: str
) -> None:
    secret = "S3CRET-PRIVATE-KEY-MATERIAL"
    key_path = tmp_path / "key.json"
    if key_file == "malformed":
        key_path.write_text(
            '{"type": "service_account", "project_id": "p", "private_key_id": "id",'
            f' "private_key": "-----BEGIN PRIVATE KEY-----\\n{secret}\\n-----END PRIVATE KEY-----",'
            ' "client_email": "x@p.iam.gserviceaccount.com", "token_uri": "https://x/token"}'
        )
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:1")
    storage.reset_client_cache()
    try:
        with pytest.raises(CredentialsError) as info:
            storage.read_bytes("gs://some-bucket/key.bin")
    finally:
        storage.reset_client_cache()
    message = str(info.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "gcloud auth application-default login" in message
    assert "STORAGE_EMULATOR_HOST" in message
    assert secret not in message and "BEGIN PRIVATE KEY" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- retries ------------------------------------------------------------------------------------


def test_retry_predicate() -> None:
    assert storage.is_transient(api_exceptions.ServiceUnavailable("503"))
    assert storage.is_transient(api_exceptions.TooManyRequests("429"))
    assert storage.is_transient(api_exceptions.InternalServerError("500"))
    assert storage.is_transient(ConnectionResetError())
    assert not storage.is_transient(api_exceptions.NotFound("404"))
    assert not storage.is_transient(api_exceptions.Forbidden("403"))
    assert not storage.is_transient(ValueError("bad"))


def test_retry_wraps_flaky_call(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise api_exceptions.ServiceUnavailable("backend busy")
        return "ok"

    with caplog.at_level(logging.WARNING, logger="s2ac.io.storage"):
        assert storage.build_retry(FAST_RETRY)(flaky)() == "ok"
    assert calls == 3
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "HTTP 503" in caplog.records[0].getMessage()

    def not_found() -> None:
        nonlocal calls
        calls += 1
        raise api_exceptions.NotFound("gone")

    calls = 0
    with pytest.raises(api_exceptions.NotFound):
        storage.build_retry(FAST_RETRY)(not_found)()
    assert calls == 1


_OBJECT_PATH = re.compile(r"/b/[^/?]+/o(/|\?|$)")


class FlakyProxy(http.server.ThreadingHTTPServer):
    """Forwards to the emulator, but answers the next ``fail_next`` requests whose path matches
    ``fail_path`` with ``status``."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _FlakyHandler)
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.fail_next = 0
        self.fail_path = _OBJECT_PATH
        self.status = 503
        self.failed = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    server: FlakyProxy

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            # Only object requests: google-cloud-storage 3.x also fetches bucket metadata in a
            # background thread (for tracing attributes), which must not eat the injected errors.
            fail = self.server.fail_next > 0 and self.server.fail_path.search(self.path) is not None
            if fail:
                self.server.fail_next -= 1
                self.server.failed += 1
        if fail:
            payload = b'{"error": {"code": %d, "message": "flaky proxy"}}' % self.server.status
            self.send_response(self.server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=30)
        upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky_proxy(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(gcs_emulator.host)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    storage.reset_client_cache()
    yield proxy
    proxy.shutdown()
    proxy.server_close()
    storage.reset_client_cache()


@service
def test_transient_503_is_retried_for_upload_and_download(
    flaky_proxy: FlakyProxy,
    gcs_prefix: str,
    fast_retry: RetryPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def retries_logged() -> int:
        return sum(
            "HTTP 503" in r.getMessage() for r in caplog.records if r.name == storage.log.name
        )

    caplog.set_level(logging.WARNING, logger=storage.log.name)
    uri = gcs_prefix + "flaky.bin"
    flaky_proxy.fail_next = 2
    storage.write_bytes(uri, b"survived")
    assert (flaky_proxy.failed, retries_logged()) == (2, 2)  # our Retry, not the library's default

    flaky_proxy.fail_next = 2
    assert storage.read_bytes(uri) == b"survived"
    assert (flaky_proxy.failed, retries_logged()) == (4, 4)

    flaky_proxy.fail_next = 2
    with storage.open_write(gcs_prefix + "flaky-stream.bin") as f:  # resumable upload
        f.write(b"streamed")
    assert (flaky_proxy.failed, retries_logged()) == (6, 6)
    assert storage.read_bytes(gcs_prefix + "flaky-stream.bin") == b"streamed"

    flaky_proxy.fail_next, flaky_proxy.fail_path = 2, re.compile("/rewriteTo/")
    storage.copy(uri, gcs_prefix + "copy.bin")  # rewrite: retried by the library only with retry=
    assert (flaky_proxy.failed, retries_logged()) == (8, 8)
    assert storage.read_bytes(gcs_prefix + "copy.bin") == b"survived"


@service
def test_permanent_errors_are_not_retried(flaky_proxy: FlakyProxy, gcs_prefix: str) -> None:
    uri = gcs_prefix + "x.bin"
    flaky_proxy.status, flaky_proxy.fail_next = 403, 1
    with pytest.raises(CredentialsError, match="^" + re.escape(f"{uri}: access denied (HTTP 403)")):
        storage.read_bytes(uri)
    assert flaky_proxy.failed == 1

    # A 503 that does not go away ends with a clear error once the retry budget is spent.
    previous = storage.set_retry_policy(RetryPolicy(initial=0.01, maximum=0.05, timeout=0.5))
    flaky_proxy.status, flaky_proxy.fail_next = 503, 10_000
    try:
        expected = re.escape(f"{uri}: still failing after retrying for 0.5 s")
        with pytest.raises(StorageError, match="^" + expected):
            storage.read_bytes(uri)
    finally:
        storage.set_retry_policy(previous)
    assert 3 <= flaky_proxy.failed < 200
