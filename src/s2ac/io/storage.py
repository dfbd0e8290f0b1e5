"""One read/write/list interface for local paths and ``gs://bucket/key`` URIs.

Pipeline steps take "a URI" and must not care whether it is a laptop path or a bucket, so every
function here accepts both. Cloud Storage goes through google-cloud-storage with the user's normal
credentials; when ``STORAGE_EMULATOR_HOST`` is set the very same code talks to a local emulator
(the library then uses anonymous credentials), which is how the tests run.

Every Cloud Storage call gets the same explicit retry (one configurable backoff, a WARNING per
retry), also the calls the library only retries under a precondition (``rewrite``, used by
:func:`copy`): a training run should not die on one 503. Errors come out as :mod:`s2ac.errors`
types whose messages name the URI and the fix, never a credential.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud import storage
from google.cloud.storage.exceptions import InvalidResponse
from google.cloud.storage.fileio import BlobWriter

from s2ac.console import track
from s2ac.errors import BucketNotFoundError, CredentialsError, ObjectNotFoundError, StorageError

log = logging.getLogger(__name__)

Uri = str | os.PathLike[str]

GCS_SCHEME = "gs://"
# Object operations never use the client's project. With the emulator any name will do; for real
# Cloud Storage without GOOGLE_CLOUD_PROJECT we pass None ("no project") rather than fail on
# credentials that carry none.
_EMULATOR_PROJECT = "s2ac-emulator"
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    http.client.HTTPException,
)
_NO_CREDENTIALS = (
    "no Google Cloud credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
    "key file or run `gcloud auth application-default login` "
    "(or set STORAGE_EMULATOR_HOST to use a local Cloud Storage emulator)"
)


# --- retries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient Cloud Storage errors (seconds)."""

    initial: float = 1.0
    maximum: float = 32.0
    multiplier: float = 2.0
    timeout: float = 120.0


_policy = RetryPolicy()


def set_retry_policy(policy: RetryPolicy) -> RetryPolicy:
    """Use ``policy`` for every later call of this module; returns the previous policy."""
    global _policy
    previous, _policy = _policy, policy
    return previous


def _status(exc: BaseException) -> int | None:
    """HTTP status of an API error, whichever layer of google-cloud-storage raised it."""
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code
    if isinstance(exc, InvalidResponse):  # raised by resumable uploads (blob.open("wb"))
        return getattr(exc.response, "status_code", None)
    return None


def is_transient(exc: BaseException) -> bool:
    """Retry predicate: throttling (429), server errors (5xx), timeouts and dropped connections."""
    if isinstance(exc, auth_exceptions.TransportError):  # token refresh hit a network error
        return True
    status = _status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS
    return isinstance(exc, _TRANSIENT_TYPES)


def _log_retry(exc: BaseException) -> None:
    # Only the class and status: messages of some errors carry URLs we do not need in logs.
    status = _status(exc)
    detail = f" (HTTP {status})" if status is not None else ""
    log.warning("transient Cloud Storage error %s%s; retrying", type(exc).__name__, detail)


def build_retry(policy: RetryPolicy | None = None) -> Retry:
    """The Retry passed to every Cloud Storage call (defaults to the module's current policy)."""
    p = policy or _policy
    return Retry(
        predicate=is_transient,
        initial=p.initial,
        maximum=p.maximum,
        multiplier=p.multiplier,
        timeout=p.timeout,
        on_error=_log_retry,
    )


# --- client and errors ------------------------------------------------------------------------


def _client() -> storage.Client:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST") or None
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or (_EMULATOR_PROJECT if emulator else None)
    return _cached_client(emulator, project, os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))


@functools.lru_cache(maxsize=8)
def _cached_client(
    emulator: str | None, project: str | None, key_file: str | None
) -> storage.Client:
    # The arguments are the cache key; storage.Client itself reads them from os.environ, and with
    # STORAGE_EMULATOR_HOST set it uses anonymous credentials and never looks for real ones.
    try:
        return storage.Client(project=project)
    except auth_exceptions.DefaultCredentialsError:
        where = (
            f" (GOOGLE_APPLICATION_CREDENTIALS={key_file} could not be loaded)" if key_file else ""
        )
        # from None: google-auth's cause can carry parse details of the key file.
        raise CredentialsError(_NO_CREDENTIALS + where) from None


def reset_client_cache() -> None:
    """Forget cached clients (after changing STORAGE_EMULATOR_HOST, credentials or project)."""
    _cached_client.cache_clear()


def _text(uri: Uri) -> str:
    text = os.fspath(uri)
    if text.startswith("gs:/") and not text.startswith(GCS_SCHEME):
        raise ValueError(f"{text!r}: a gs:// URI collapsed by pathlib.Path; pass it as a str")
    return text


def is_gcs(uri: Uri) -> bool:
    """True for ``gs://`` URIs, False for local paths."""
    return _text(uri).startswith(GCS_SCHEME)


def split_gcs(uri: Uri) -> tuple[str, str]:
    """``"gs://bucket/a/b"`` -> ``("bucket", "a/b")``; the key may be empty (whole bucket)."""
    text = _text(uri)
    if not text.startswith(GCS_SCHEME):
        raise ValueError(f"{text!r} is not a gs:// URI (expected gs://bucket/key)")
    bucket, _, key = text[len(GCS_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{text!r}: missing bucket name (expected gs://bucket/key)")
    return bucket, key


def _blob(uri: str) -> storage.Blob:
    bucket, key = split_gcs(uri)
    if not key or key.endswith("/"):
        raise ValueError(f"{uri!r} names a bucket or folder, not an object (expected gs://b/key)")
    return _client().bucket(bucket).blob(key)


def _missing(uri: str) -> StorageError:
    """Cloud Storage answers 404 for a missing object and a missing bucket alike: ask which."""
    bucket = split_gcs(uri)[0]
    try:
        bucket_exists = _client().bucket(bucket).exists(retry=build_retry())
    except api_exceptions.GoogleAPICallError:
        bucket_exists = True  # e.g. 403 without storage.buckets.get: it exists, we just can't see
    if bucket_exists:
        return ObjectNotFoundError(f"{uri}: object not found")
    return BucketNotFoundError(
        f"gs://{bucket}: bucket not found (create it or check the name/project)"
    )


@contextlib.contextmanager
def _gcs_errors(uri: str) -> Iterator[None]:
    """Turn google-cloud-storage exceptions into s2ac errors naming ``uri``."""
    try:
        yield
    except (api_exceptions.GoogleAPICallError, InvalidResponse) as exc:
        status = _status(exc)
        if status == 404:
            raise _missing(uri) from exc
        if status in (401, 403):
            raise CredentialsError(
                f"{uri}: access denied (HTTP {status}); check that the active Google credentials "
                "may use this bucket"
            ) from exc
        raise StorageError(f"{uri}: Cloud Storage request failed (HTTP {status})") from exc
    except auth_exceptions.RefreshError:
        raise CredentialsError(
            f"{uri}: the Google credentials were refused when refreshing the access token "
            "(run `gcloud auth application-default login` again or check the key file)"
        ) from None  # the token endpoint's answer is not for logs
    except api_exceptions.RetryError as exc:
        cause = type(exc.cause).__name__ if exc.cause else "timeout"
        raise StorageError(
            f"{uri}: still failing after retrying for {_policy.timeout:g} s ({cause})"
        ) from exc


def _existing_blob(uri: str) -> storage.Blob:
    """Fetch metadata first: a clear not-found error early, and reads pinned to one generation."""
    blob = _blob(uri)
    with _gcs_errors(uri):
        found = blob.bucket.get_blob(blob.name, retry=build_retry())
    if found is None:
        raise _missing(uri)
    return found


# --- local helpers ----------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_local_write(path: str) -> Iterator[IO[bytes]]:
    """Write to a temp file beside ``path`` and rename on success, so readers (and a crashed
    run's resume) never see a half-written file; on error the temp file is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs must be readable by other users
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _open_local(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ObjectNotFoundError(f"{path}: file not found") from None


def _list_local(prefix: str, recursive: bool) -> list[str]:
    # Same meaning as a gs:// prefix: "d/a" matches d/a.txt and d/ab/..., "d/a/" only d/a/...
    head, stem = os.path.split(prefix)
    if not os.path.isdir(head or "."):
        return []
    found: list[str] = []
    for entry in os.scandir(head or "."):
        if not entry.name.startswith(stem):
            continue
        if entry.is_file():
            found.append(os.path.join(head, entry.name))
        elif recursive and entry.is_dir():
            for root, _, files in os.walk(os.path.join(head, entry.name)):
                found.extend(os.path.join(root, name) for name in files)
    return sorted(found)


# --- public API -------------------------------------------------------------------------------


def read_bytes(uri: Uri) -> bytes:
    """Whole content of a file or object."""
    text = _text(uri)
    if not is_gcs(text):
        with _open_local(text) as f:
            return f.read()
    with _gcs_errors(text):
        return _blob(text).download_as_bytes(retry=build_retry())


def write_bytes(uri: Uri, data: bytes) -> None:
    """Create or replace a file (atomically, parents created) or object."""
    text = _text(uri)
    if not is_gcs(text):
        with _atomic_local_write(text) as f:
            f.write(data)
        return
    with _gcs_errors(text):
        _blob(text).upload_from_string(
            data, content_type="application/octet-stream", retry=build_retry()
        )


@contextlib.contextmanager
def open_read(uri: Uri) -> Iterator[IO[bytes]]:
    """Binary reader that streams the content in chunks instead of loading it whole."""
    text = _text(uri)
    if not is_gcs(text):
        with _open_local(text) as f:
            yield f
        return
    blob = _existing_blob(text)
    with _gcs_errors(text), blob.open("rb", retry=build_retry()) as f:
        yield f


@contextlib.contextmanager
def open_write(uri: Uri) -> Iterator[IO[bytes]]:
    """Binary writer that streams in chunks. Nothing appears under ``uri`` unless the block ends
    without an exception: local files are renamed into place, GCS resumable uploads are only
    finalised on close (and cancelled on error)."""
    text = _text(uri)
    if not is_gcs(text):
        with _atomic_local_write(text) as f:
            yield f
        return
    writer = _blob(text).open("wb", retry=build_retry())
    with _gcs_errors(text):
        try:
            yield writer
            writer.close()  # uploads the last chunk and finalises: only now the object appears
        except BaseException:
            _abandon(writer)
            raise


def _abandon(writer: BlobWriter) -> None:
    """Cancel an upload for good. Not BlobWriter.__exit__: after a failed close() it leaves the
    writer open, and garbage collection then calls close() again, re-sending the upload."""
    try:
        writer.terminate()  # deletes the resumable session if one was started
    except Exception:  # e.g. network down: the session expires on its own
        buffer = getattr(writer, "_buffer", None)
        if buffer is not None:
            buffer.close()  # marks the writer closed, so GC does not retry the upload


def exists(uri: Uri) -> bool:
    """True if the object or local path exists (False also when the bucket does not)."""
    text = _text(uri)
    if not is_gcs(text):
        return os.path.exists(text)
    with _gcs_errors(text):
        return _blob(text).exists(retry=build_retry())


def list_uris(prefix_uri: Uri, *, recursive: bool = True) -> list[str]:
    """Sorted URIs of the objects/files whose name starts with ``prefix_uri``.

    The prefix is a string prefix, as in Cloud Storage: ``gs://b/a`` matches ``a/1`` and
    ``ab/4``, end it with ``/`` to mean a folder. ``recursive=False`` stops at the next ``/``.
    Folders themselves (and the zero-byte ``key/`` placeholders the console makes) are not listed.
    """
    text = _text(prefix_uri)
    if not is_gcs(text):
        return _list_local(text, recursive)
    bucket, prefix = split_gcs(text)
    with _gcs_errors(f"gs://{bucket}/{prefix}"):
        blobs = _client().list_blobs(
            bucket,
            prefix=prefix or None,
            delimiter=None if recursive else "/",
            retry=build_retry(),
        )
        names = [blob.name for blob in blobs]
    return sorted(f"gs://{bucket}/{name}" for name in names if not name.endswith("/"))


def copy(src_uri: Uri, dst_uri: Uri) -> None:
    """Copy between any two of local path and gs:// URI; the destination is replaced."""
    src, dst = _text(src_uri), _text(dst_uri)
    if not is_gcs(src) and not is_gcs(dst):
        with _open_local(src) as fin, _atomic_local_write(dst) as fout:
            shutil.copyfileobj(fin, fout, 1024 * 1024)
    elif not is_gcs(src):
        if not os.path.isfile(src):
            raise ObjectNotFoundError(f"{src}: file not found")
        with _gcs_errors(dst):
            _blob(dst).upload_from_filename(src, retry=build_retry())
    elif not is_gcs(dst):
        blob = _existing_blob(src)
        with _gcs_errors(src), _atomic_local_write(dst) as f:
            blob.download_to_file(f, retry=build_retry())
    else:
        source, target = _existing_blob(src), _blob(dst)
        # rewrite (not copy_blob) works across buckets, locations and storage classes; large
        # objects take several calls, continued with the token.
        with _gcs_errors(dst):
            token, _, _ = target.rewrite(source, retry=build_retry())
            while token is not None:
                token, _, _ = target.rewrite(source, token=token, retry=build_retry())


def upload(local_path: Uri, uri: Uri) -> None:
    """Copy a local file to ``uri``."""
    if is_gcs(local_path):
        raise ValueError(f"upload: source {os.fspath(local_path)!r} must be a local path")
    copy(local_path, uri)


def download(uri: Uri, local_path: Uri) -> None:
    """Copy ``uri`` to a local file (atomically, parents created)."""
    if is_gcs(local_path):
        raise ValueError(f"download: destination {os.fspath(local_path)!r} must be a local path")
    copy(uri, local_path)


def delete(uri: Uri, *, missing_ok: bool = False) -> None:
    """Remove a file or object; ObjectNotFoundError if absent unless ``missing_ok``."""
    text = _text(uri)
    try:
        if not is_gcs(text):
            try:
                os.remove(text)
            except FileNotFoundError:
                raise ObjectNotFoundError(f"{text}: file not found") from None
            return
        with _gcs_errors(text):
            _blob(text).delete(retry=build_retry())
    except ObjectNotFoundError:
        if not missing_ok:
            raise


def size(uri: Uri) -> int:
    """Size in bytes of a local file or Cloud Storage object."""
    text = _text(uri)
    if not is_gcs(text):
        if not os.path.isfile(text):
            raise ObjectNotFoundError(f"{text}: file not found")
        return os.path.getsize(text)
    return int(_existing_blob(text).size or 0)


@contextlib.contextmanager
def localize(uri: Uri) -> Iterator[str]:
    """A local path for ``uri``: the path itself, or a temporary download removed afterwards.

    For libraries (GDAL, TensorFlow readers) that need a file on disk, not a stream.
    """
    text = _text(uri)
    if not is_gcs(text):
        yield text
        return
    with tempfile.TemporaryDirectory(prefix="s2ac-") as folder:
        local = os.path.join(folder, os.path.basename(split_gcs(text)[1]) or "object")
        download(text, local)
        yield local


def default_cache_dir() -> Path:
    """Where downloaded ``gs://`` files are kept: ``$S2AC_CACHE_DIR`` or ``~/.cache/s2ac``."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("S2AC_CACHE_DIR") or os.path.join(cache_home, "s2ac")) / "tfrecords"


def localize_files(
    files: Sequence[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> list[str]:
    """Local paths for ``files``: ``gs://bucket/key`` is downloaded to ``cache_dir/bucket/key``
    unless a file of the same size is already there (a rerun does not download again)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    remote = [uri for uri in files if is_gcs(uri)]
    local_of: dict[str, str] = {}
    for uri in track(remote, "Fetching TFRecord files"):
        bucket, key = split_gcs(uri)
        local = root / bucket / key
        remote_size = size(uri)
        if not (local.is_file() and local.stat().st_size == remote_size):
            download(uri, local)  # atomic: an interrupted download leaves no file
        local_of[uri] = str(local)
    return [local_of.get(f, os.fspath(f)) for f in files]
