"""Resolve ``--model`` to a Keras generator and the registry facts an output must name.

``models:/NAME@ALIAS`` is resolved to its version *once*, and that version (``models:/NAME/V``) is
what gets loaded and written into the output's tags: an alias moved by a promotion mid-run cannot
change which model corrected a scene.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2ac.errors import InputDataError

#: The model ``s2ac correct`` uses unless told otherwise.
DEFAULT_MODEL = "models:/s2ac-pix2pix@champion"
#: Tile for networks that take any size (the generators take their training patch, 256 px).
DEFAULT_TILE = 256


@dataclass
class LoadedGenerator:
    """A generator and where it came from."""

    network: Any  # keras.Model
    uri: str  # what was loaded (an alias resolved to its version)
    version: str | None = None
    run_id: str | None = None

    @property
    def tile(self) -> int:
        """The patch size the network takes; :data:`DEFAULT_TILE` for a fully convolutional one
        without a fixed size."""
        shape = self.network.input["toa"].shape if self.needs_geometry else self.network.input.shape
        return int(shape[1]) if shape[1] is not None else DEFAULT_TILE

    @property
    def needs_geometry(self) -> bool:
        return isinstance(self.network.input, dict)

    def predictor(self, geometry: tuple[float, ...] | None, batch_size: int) -> Any:
        """``(B, tile, tile, 4) -> (B, tile, tile, 4)`` with the scene's geometry where needed.

        The network is called in one compiled function of a fixed batch: ``keras.Model.predict``
        builds a ``tf.data`` pipeline on every call (~80 ms here, more than a small generator's
        own work), and a shape-relaxed trace is slower than a static one. A chunk smaller than
        a size already traced is padded up to it (with copies of its last tile) rather than
        traced anew (~3 s for the physics generator).
        """
        import tensorflow as tf

        if self.needs_geometry and geometry is None:
            raise ValueError("this generator needs the acquisition geometry")
        row = None if geometry is None else np.asarray(geometry, np.float32)[None]
        network = self.network
        call = tf.function(lambda feed: network(feed, training=False))
        traced: list[int] = []

        def run(chunk: np.ndarray) -> np.ndarray:
            n = len(chunk)
            size = min((s for s in traced if s >= n), default=n)
            if size == n and n not in traced:
                traced.append(n)
            if size > n:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
            feed: Any = np.ascontiguousarray(chunk, np.float32)
            if self.needs_geometry:
                feed = {"toa": feed, "geometry": np.repeat(row, size, axis=0)}
            return np.asarray(call(feed), dtype=np.float32)[:n]

        def predict(batch: np.ndarray) -> np.ndarray:
            starts = range(0, len(batch), batch_size)
            return np.concatenate([run(batch[start : start + batch_size]) for start in starts])

        return predict


def registry_version(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (pinned URI, version, run id)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if not match:
        return uri, None, None
    name, alias, number = match.groups()
    client = MlflowClient()
    try:
        found = (client.get_model_version_by_alias(name, alias) if alias
                 else client.get_model_version(name, number))  # fmt: skip
    except MlflowException as exc:
        what = f"alias {alias!r}" if alias else f"version {number}"
        raise InputDataError(
            uri, f"registered model {name!r} has no {what} ({exc.message})",
            "train and promote a model first, or pass --model",
        ) from None  # fmt: skip
    return f"models:/{name}/{found.version}", str(found.version), found.run_id


def load_generator_model(model: str | Path) -> LoadedGenerator:
    """A checkpoint folder, ``.keras`` file, MLflow model folder or ``models:/``/``runs:/`` URI."""
    import keras

    from s2ac.model import physics_generator, pix2pix  # noqa: F401 - registers layers for loading

    text = str(model)
    local = Path(text)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        if (local / "MLmodel").is_file():
            return LoadedGenerator(_pyfunc_generator(text), text)
        path = local / "generator.keras" if local.is_dir() else local
        if not path.is_file():
            raise InputDataError(text, "no generator here (.keras file, checkpoint folder or "
                                 "MLflow model)", "train first or pass a models:/ URI")  # fmt: skip
        return LoadedGenerator(keras.saving.load_model(path), str(path))
    uri, version, run_id = registry_version(text)
    return LoadedGenerator(_pyfunc_generator(uri), uri, version, run_id)


def _pyfunc_generator(uri: str) -> Any:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri).unwrap_python_model().generator
    except (MlflowException, TypeError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:300]
        raise InputDataError(uri, f"cannot load the model: {reason}",
                             "a model saved by an older s2ac may need retraining; or pass "
                             "another --model") from exc  # fmt: skip
