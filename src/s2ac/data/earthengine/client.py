"""The Earth Engine client: credentials, project, API URL, and one retry policy for every call.

A module of its own because it is the only code that talks to Google's authentication and
decides how requests are retried and how failures read; what is asked of Earth Engine lives in
:mod:`s2ac.data.earthengine.scenes` and :mod:`s2ac.data.earthengine.export`, which make every
request through :meth:`EarthEngine.call`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ee
import google.auth
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account
from googleapiclient.errors import HttpError

from s2ac.config import EarthEngineConfig, with_changes
from s2ac.errors import (
    ConfigError,
    CredentialsError,
    EarthEngineError,
    EarthEngineQuotaError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_API_URL = "https://earthengine.googleapis.com"
SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
)
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_NO_CREDENTIALS = (
    "no Google credentials for Earth Engine: set data.earthengine.service_account_key to a "
    "service-account key file, set GOOGLE_APPLICATION_CREDENTIALS, or run "
    "`gcloud auth application-default login`"
)


def with_environment(cfg: EarthEngineConfig, environ: Mapping[str, str]) -> EarthEngineConfig:
    """Fill unset ``project`` / ``api_url`` from EE_PROJECT or GOOGLE_CLOUD_PROJECT / EE_API_URL.

    Called at the edge (CLI, components): library code gets everything through the config.
    """
    update: dict[str, Any] = {}
    project = environ.get("EE_PROJECT") or environ.get("GOOGLE_CLOUD_PROJECT")
    if cfg.project is None and project:
        update["project"] = project
    if cfg.api_url is None and environ.get("EE_API_URL"):
        update["api_url"] = environ["EE_API_URL"]
    return with_changes(cfg, update) if update else cfg


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: waits ``initial * multiplier**k`` seconds, at most ``maximum``."""

    initial: float = 2.0
    multiplier: float = 2.0
    maximum: float = 64.0
    attempts: int = 6  # 1 + retries

    def delays(self) -> list[float]:
        return [
            min(self.initial * self.multiplier**k, self.maximum) for k in range(self.attempts - 1)
        ]


def http_status(exc: BaseException) -> int | None:
    """HTTP status behind an earthengine-api error (it keeps the HttpError as the context)."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, HttpError):
            return int(candidate.resp.status)
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, HttpError):
        return str(exc._get_reason()).strip()  # the server's message; the URL is not needed
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@dataclass
class EarthEngine:
    """An initialised client: every request goes through :meth:`call` (retries, clear errors)."""

    project: str
    url: str
    credentials_source: str
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    retries: int = 0  # transient failures retried so far (for reports and tests)

    def call(self, request: Callable[[], T], what: str) -> T:
        """Run one Earth Engine request; retry 429/5xx/connection errors with backoff."""
        delays = self.backoff.delays()
        for attempt in range(len(delays) + 1):
            try:
                return request()
            except (ee.EEException, HttpError, auth_exceptions.TransportError, OSError) as exc:
                status = http_status(exc)
                transient = status in _TRANSIENT or (
                    status is None and isinstance(exc, auth_exceptions.TransportError | OSError)
                )
                if not transient or attempt == len(delays):
                    raise self._error(exc, what, status, attempt + 1) from None
                self.retries += 1
                detail = f"HTTP {status}" if status else type(exc).__name__
                log.warning("%s: Earth Engine answered %s; retry %d/%d in %.0f s",
                            what, detail, attempt + 1, len(delays), delays[attempt])  # fmt: skip
                self.sleep(delays[attempt])
            except auth_exceptions.RefreshError as exc:
                raise self._refused(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, exc: auth_exceptions.RefreshError) -> CredentialsError:
        # args[0] is the token endpoint's error code and description, never key material.
        reason = str(exc.args[0]).splitlines()[0] if exc.args else "refused"
        return CredentialsError(
            f"Earth Engine: Google refused an access token for the {self.credentials_source} "
            f"({reason}); check the key file or run `gcloud auth application-default login`"
        )

    def _error(self, exc: BaseException, what: str, status: int | None, tries: int) -> Exception:
        reason = _reason(exc)
        if status in (401, 403):
            return CredentialsError(
                f"Earth Engine refused {what} (HTTP {status}: {reason}); check that the "
                f"{self.credentials_source} may use Earth Engine in project {self.project}"
            )
        if status == 429:
            return EarthEngineQuotaError(
                f"{what}: Earth Engine quota or concurrency limit (HTTP 429: {reason}) after "
                f"{tries} attempts; wait, run fewer requests at once, or raise "
                "data.earthengine.max_retries"
            )
        where = f" (HTTP {status})" if status else ""
        return EarthEngineError(f"{what}: Earth Engine error{where}: {reason}")


def load_credentials(cfg: EarthEngineConfig) -> tuple[Any, str | None, str]:
    """(credentials, their project or None, a description for messages without secrets)."""
    key = cfg.service_account_key
    if key:
        source = f"service-account key {key}"
        if not os.path.isfile(key):
            raise CredentialsError(f"{key}: service-account key file not found")
        try:
            credentials = service_account.Credentials.from_service_account_file(key, scopes=SCOPES)
        except (ValueError, KeyError, TypeError):  # json.JSONDecodeError is a ValueError
            raise CredentialsError(
                f"{key}: not a usable service-account key file (expected the JSON key of a "
                "service account, with client_email, private_key and token_uri)"
            ) from None  # the parser's message may quote the key
        return credentials, credentials.project_id, source
    try:
        credentials, project = google.auth.default(scopes=SCOPES)
    except auth_exceptions.DefaultCredentialsError:
        raise CredentialsError(_NO_CREDENTIALS) from None
    return credentials, project, "application default credentials"


def connect(cfg: EarthEngineConfig, *, sleep: Callable[[float], None] = time.sleep) -> EarthEngine:
    """Initialise Earth Engine for ``cfg`` (credentials, project, API URL) and return a client.

    Raises:
        CredentialsError: no usable credentials, or Earth Engine refused them.
        ConfigError: no project could be determined.
    """
    credentials, key_project, source = load_credentials(cfg)
    project = cfg.project or key_project
    if not project:
        raise ConfigError(
            "no Earth Engine project: set data.earthengine.project (or EE_PROJECT / "
            "GOOGLE_CLOUD_PROJECT) to a Cloud project registered for Earth Engine"
        )
    url = (cfg.api_url or DEFAULT_API_URL).rstrip("/")
    client = EarthEngine(project, url, source, Backoff(attempts=cfg.max_retries + 1), sleep)
    ee.Reset()  # a fresh start: otherwise a second Initialize skips checking the new settings
    ee.data.setMaxRetries(0)  # one retry policy, ours (logged, injectable sleep)
    client.call(
        lambda: ee.Initialize(credentials, url=url, project=project), "initialising Earth Engine"
    )
    log.info("Earth Engine initialised: project %s, %s, %s", project, url, source)
    return client
