"""Typed errors whose messages name the file, what was found, what was expected and the fix.

Callers (CLI, KFP components) catch :class:`S2ACError` and print its message without a traceback.
"""

from __future__ import annotations


class S2ACError(Exception):
    """Base class of every error s2ac raises on purpose."""


class ConfigError(S2ACError, ValueError):
    """A configuration file, profile or override is invalid (names the key)."""


class InputDataError(S2ACError, ValueError):
    """Input data is unusable: wrong band count, NaN, DN instead of reflectance, missing CRS..."""

    def __init__(self, path: object, problem: str, fix: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        message = f"{self.path}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class TrainingDivergedError(S2ACError, RuntimeError):
    """A training loss became NaN or infinite; the model of that epoch was not saved."""


class StorageError(S2ACError, OSError):
    """A storage operation failed for a reason the user can act on."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The file or Cloud Storage object does not exist."""


class BucketNotFoundError(StorageError, FileNotFoundError):
    """The Cloud Storage bucket does not exist."""


class CredentialsError(StorageError, PermissionError):
    """No usable Google credentials, or they were refused."""


class EarthEngineError(S2ACError):
    """An Earth Engine request failed (the message names the request and Earth Engine's reason)."""


class EarthEngineQuotaError(EarthEngineError):
    """Earth Engine kept answering HTTP 429 (quota or concurrency limit) through every retry."""


class ExportTaskError(EarthEngineError):
    """Export tasks ended FAILED or CANCELLED (names each task id and Earth Engine's message)."""


class RequestTooLargeError(EarthEngineError, ValueError):
    """A direct pixel request exceeds Earth Engine's per-request limit (names size and limit)."""
