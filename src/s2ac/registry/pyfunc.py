"""The MLflow pyfunc wrapper of the generator: TOA reflectance (N, H, W, 4) of any H x W in, SR out.

Served anywhere: the model carries s2ac's own code (``code_paths``), and its requirements name
the published packages that code imports (:data:`SERVING_PACKAGES`, pinned to this environment),
never the unpublished ``s2ac`` wheel. ``mlflow models serve`` builds a working environment from
them alone.

Inputs of the generator's patch size go through it in batches; any other size is tiled with
blended overlaps by :func:`s2ac.correction.tiles.blend_array`, the same code as ``s2ac correct``
(``params={"overlap": px}``). The physics-informed generator also needs the acquisition
geometry: its input is ``{"toa": (N, H, W, 4), "geometry": (N, 6)}`` (see
:data:`s2ac.physics.tf_lut.GEOMETRY`), and its signature says so. The signature leaves N, H and
W free. Its dtype is float32: MLflow enforces tensor dtypes exactly, so in-process NumPy input must
be float32 (``.astype("float32")``); JSON requests (``mlflow models serve``) are parsed into the
declared dtype, so any numbers work there.

Why pyfunc rather than the keras flavour: it loads without s2ac's training code, serves with
``mlflow models serve``, and (in MLflow 3.17) the keras flavour fails to save an input example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

GENERATOR_ARTIFACT = "generator"
#: Blended overlap (px) of tiles for inputs larger than the generator's patch: 25 % of 256.
DEFAULT_OVERLAP = 64


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """Runs the saved Keras generator on reflectance, bands B2, B3, B4, B8 last."""

    def load_context(self, context: Any) -> None:
        import keras

        import s2ac.model.physics_generator  # noqa: F401 - registers its layers for loading

        self.generator = keras.saving.load_model(context.artifacts[GENERATOR_ARTIFACT])

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        from s2ac.correction.model import LoadedGenerator
        from s2ac.correction.tiles import blend_array

        inputs = dict(model_input) if isinstance(model_input, dict) else {"toa": model_input}
        batch = np.asarray(inputs["toa"], dtype=np.float32)
        batch = batch[None] if batch.ndim == 3 else batch  # one image
        if batch.ndim != 4 or batch.shape[-1] != 4:
            raise ValueError(f"expected (N, H, W, 4) reflectance, got shape {batch.shape}")
        model = LoadedGenerator(self.generator, "pyfunc")
        geometry: np.ndarray | None = None
        if model.needs_geometry:
            if "geometry" not in inputs:
                raise ValueError("this generator needs the acquisition geometry: pass "
                                 '{"toa": (N, H, W, 4), "geometry": (N, 6)}')  # fmt: skip
            geometry = np.asarray(inputs["geometry"], np.float32).reshape(len(batch), -1)
        tile = model.tile
        if batch.shape[1:3] == (tile, tile) and np.isfinite(batch).all():
            feed = batch if geometry is None else {"toa": batch, "geometry": geometry}
            return np.asarray(self.generator.predict(feed, verbose=0, batch_size=8))
        overlap = int((params or {}).get("overlap", DEFAULT_OVERLAP))
        return np.stack([
            blend_array(image, model.predictor(None if geometry is None else tuple(geometry[n]), 8),
                        tile=tile, overlap=min(overlap, tile // 2))
            for n, image in enumerate(batch)
        ])  # fmt: skip


#: What the code the pyfunc runs imports (tests/registry/test_pyfunc.py checks it against the
#: imports of every s2ac module loaded for serving). Distribution names.
SERVING_PACKAGES = ("mlflow", "cloudpickle", "numpy", "scipy", "keras", "tensorflow", "rich",
                    "pydantic", "pyyaml")  # fmt: skip


def pip_requirements() -> list[str]:
    """The serving packages pinned to the versions installed here."""
    import importlib.metadata as metadata

    pins = []
    for name in SERVING_PACKAGES:
        candidates = ("tensorflow", "tensorflow-cpu") if name == "tensorflow" else (name,)
        for candidate in candidates:
            try:
                pins.append(f"{candidate}=={metadata.version(candidate)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return pins


def signature(needs_geometry: bool) -> Any:
    """Variable batch and spatial size, 4 bands, float32 (the network's dtype)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    toa = TensorSpec(np.dtype(np.float32), (-1, -1, -1, 4), "toa")
    inputs = [toa, TensorSpec(np.dtype(np.float32), (-1, 6), "geometry")] if needs_geometry \
        else [TensorSpec(np.dtype(np.float32), (-1, -1, -1, 4))]  # fmt: skip
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 4))])
    params = ParamSchema([ParamSpec("overlap", "long", DEFAULT_OVERLAP)])
    return ModelSignature(Schema(inputs), outputs, params)


def log_generator(generator_file: str | Path, example: Any) -> Any:
    """Log the generator as a pyfunc model with signature, input example and its own code."""
    import s2ac

    needs_geometry = isinstance(example, dict)
    cast = {k: np.asarray(v, np.float32) for k, v in example.items()} if needs_geometry \
        else np.asarray(example, np.float32)  # fmt: skip
    return mlflow.pyfunc.log_model(
        name="generator",
        python_model=GeneratorModel(),
        artifacts={GENERATOR_ARTIFACT: str(generator_file)},
        signature=signature(needs_geometry),
        input_example=cast,
        code_paths=[str(Path(s2ac.__file__).parent)],
        pip_requirements=pip_requirements(),
    )
