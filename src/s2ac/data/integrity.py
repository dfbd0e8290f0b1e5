"""A dataset is what its manifest says: the schema, every shard's sha256, the digest.

Training, evaluation and tuning read a dataset through :func:`verify_dataset` first. Without it an
edited digest and file hash passed validation and the forged digest was logged as the model's
data; a truncated or byte-flipped shard crashed training half-way with a traceback; garbage or
``{}`` in ``manifest.json`` gave ``KeyError`` tracebacks. Every shard of the splits read is
hashed each time (sha256 runs at several hundred MB/s; the paper-scale dataset takes seconds), so
there is no "verified once" state that could go stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from s2ac.errors import InputDataError
from s2ac.io.storage import localize_files, read_bytes

#: Keys every manifest has (synthetic or assembled from an export), with their types.
REQUIRED = {"name": str, "patch_size": int, "files": dict, "digest": str, "split": dict}


def read_manifest(dataset_dir: str, *, strict: bool = True) -> dict[str, Any]:
    """The dataset's ``manifest.json``; a one-line error naming the file when it is missing,
    not JSON, or (``strict``) lacks a required key or has one of the wrong type."""
    uri = f"{str(dataset_dir).rstrip('/')}/manifest.json"
    try:
        manifest = json.loads(read_bytes(uri))
    except FileNotFoundError:
        raise InputDataError(uri, "manifest.json not found", "is this a dataset folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(uri, f"not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or "patch_size" not in manifest:
        raise InputDataError(uri, "no patch_size: not an s2ac dataset manifest")
    if strict:
        for key, kind in REQUIRED.items():
            value = manifest.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise InputDataError(
                    uri, f"key {key!r} is missing or not a {kind.__name__} (got {value!r:.60})",
                    "rebuild the dataset with `s2ac data synth` or `s2ac data assemble`",
                )  # fmt: skip
        if not isinstance(manifest["split"].get("counts"), dict):
            raise InputDataError(uri, "key 'split.counts' is missing or not a mapping")
    return manifest


def digest_of(hashes: dict[str, str]) -> str:
    """The dataset digest: sha256 of the sorted file -> sha256 mapping (as the builders write)."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (manifests record one per shard)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_dataset(
    dataset_dir: str, splits: Iterable[str], manifest: dict[str, Any] | None = None,
    *, cache_dir: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Check ``dataset_dir`` against its manifest for the ``splits`` about to be read, and return
    the manifest. Errors (:class:`InputDataError`, naming the file): a digest that is not the
    digest of the recorded file hashes (an edited manifest); a split that is empty or has no
    shards; a shard that is missing, unlisted, or whose sha256 differs (changed or damaged)."""
    from s2ac.data.tfrecord import list_tfrecords

    root = str(dataset_dir).rstrip("/")
    manifest = manifest if manifest is not None else read_manifest(root)
    uri = f"{root}/manifest.json"
    hashes: dict[str, str] = manifest["files"]
    if digest_of(hashes) != manifest["digest"]:
        raise InputDataError(
            uri, "the digest is not the sha256 of the recorded file hashes (manifest edited)",
            "rebuild the dataset; a digest names the data a model was trained on",
        )  # fmt: skip
    counts = manifest["split"]["counts"]
    for split in splits:
        if not counts.get(split):
            raise InputDataError(uri, f"split {split!r} is empty (0 patches in split.counts)")
        listed = {name for name in hashes if name.startswith(f"{split}/")}
        present = {f"{split}/{path.rsplit('/', 1)[-1]}": path
                   for path in list_tfrecords(f"{root}/{split}")}  # fmt: skip
        if not listed:
            raise InputDataError(uri, f"split {split!r} lists no shards in 'files'")
        for name in sorted(listed - set(present)):
            raise InputDataError(f"{root}/{name}", "listed in the manifest but missing")
        for name in sorted(set(present) - listed):
            raise InputDataError(
                f"{root}/{name}", "not in the manifest: a shard added after the dataset was built"
            )
        names = sorted(listed)
        paths = localize_files([present[name] for name in names], cache_dir=cache_dir)
        for name, path in zip(names, paths, strict=True):
            found = file_sha256(path)
            if found != hashes[name]:
                raise InputDataError(
                    f"{root}/{name}",
                    f"sha256 {found[:12]}... differs from the manifest's {hashes[name][:12]}...: "
                    "the file was changed or damaged (truncated, overwritten)",
                    "rebuild or re-copy the dataset",
                )  # fmt: skip
    return manifest
