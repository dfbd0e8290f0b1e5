"""Many scenes: find them under a prefix, name their outputs, pin the model once.

The correction pipeline resolves ``models:/NAME@champion`` to a version *before* its
``ParallelFor`` fans out, so every scene of a run is corrected by the same version even if a
promotion moves the alias meanwhile.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from s2ac.errors import InputDataError
from s2ac.io import storage

#: What counts as a scene under a prefix: GeoTIFF/COGs and zipped SAFE products.
SCENE_SUFFIXES = (".tif", ".tiff", ".zip")
#: Appended to a scene's name for its output (and never taken for a scene itself).
OUTPUT_SUFFIX = "_sr.tif"


def find_scenes(source: str) -> list[str]:
    """The scenes of ``source``: a comma-separated list of URIs, or a folder / ``gs://`` prefix
    (every ``.tif``, ``.tiff`` and ``.zip`` below it, except outputs ``*_sr.tif``), sorted."""
    if "," in source or source.lower().endswith(SCENE_SUFFIXES):
        scenes = [part.strip() for part in source.split(",") if part.strip()]
    else:
        scenes = [uri for uri in storage.list_uris(source.rstrip("/") + "/")
                  if uri.lower().endswith(SCENE_SUFFIXES)
                  and not uri.endswith(OUTPUT_SUFFIX)]  # fmt: skip
    if not scenes:
        raise InputDataError(source, "no scenes (.tif, .tiff or zipped .SAFE) found",
                             "check the prefix, or pass a comma-separated list")  # fmt: skip
    return sorted(set(scenes))


def output_for(scene: str, out_prefix: str) -> str:
    """``{out_prefix}/{scene name without extension}_sr.tif``."""
    name = PurePosixPath(scene.rstrip("/")).name
    stem = (
        name[: -len(".SAFE.zip")] if name.upper().endswith(".SAFE.ZIP") else name.rsplit(".", 1)[0]
    )
    return f"{out_prefix.rstrip('/')}/{stem}{OUTPUT_SUFFIX}"
