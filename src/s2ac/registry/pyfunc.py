"""The MLflow pyfunc wrapper of the generator: TOA patches (N, H, W, 4) in, SR out.

The physics-informed generator also needs the acquisition geometry: its input is
``{"toa": (N, H, W, 4), "geometry": (N, 6)}`` (see :data:`s2ac.physics.tf_lut.GEOMETRY`), and its
signature says so.

Why pyfunc rather than the keras flavour: it loads without s2ac's training code, serves with
``mlflow models serve``, and (in MLflow 3.17) the keras flavour fails to save an input example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

GENERATOR_ARTIFACT = "generator"


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """Runs the saved Keras generator on float32 reflectance, bands B2, B3, B4, B8 last."""

    def load_context(self, context: Any) -> None:
        import keras

        import s2ac.model.physics_generator  # noqa: F401 - registers its layers for loading

        self.generator = keras.saving.load_model(context.artifacts[GENERATOR_ARTIFACT])

    def predict(self, context: Any, model_input: Any, params: Any = None) -> np.ndarray:
        inputs = dict(model_input) if isinstance(model_input, dict) else {"toa": model_input}
        batch = np.asarray(inputs["toa"], dtype=np.float32)
        if batch.ndim != 4 or batch.shape[-1] != 4:
            raise ValueError(f"expected (N, H, W, 4) reflectance, got shape {batch.shape}")
        if isinstance(self.generator.input, dict):
            if "geometry" not in inputs:
                raise ValueError("this generator needs the acquisition geometry: pass "
                                 '{"toa": (N, H, W, 4), "geometry": (N, 6)}')  # fmt: skip
            feed: Any = {"toa": batch, "geometry": np.asarray(inputs["geometry"], np.float32)}
        else:
            feed = batch
        return np.asarray(self.generator.predict(feed, verbose=0, batch_size=8))


#: What loading and running the pyfunc imports (MLflow's own inference misses TensorFlow and
#: Keras, and costs a subprocess per logged model).
SERVING_PACKAGES = ("mlflow", "cloudpickle", "numpy", "keras", "tensorflow", "s2ac")


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


def log_generator(generator_file: str | Path, example: Any, prediction: np.ndarray) -> Any:
    """Log the generator as a pyfunc model with signature and input example; return its info."""
    from mlflow.models import infer_signature

    return mlflow.pyfunc.log_model(
        name="generator",
        python_model=GeneratorModel(),
        artifacts={GENERATOR_ARTIFACT: str(generator_file)},
        signature=infer_signature(example, prediction),
        input_example=example,
        pip_requirements=pip_requirements(),
    )
