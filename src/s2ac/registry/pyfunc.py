"""The MLflow pyfunc wrapper of the generator: TOA patches (N, H, W, 4) in, SR out.

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

        self.generator = keras.saving.load_model(context.artifacts[GENERATOR_ARTIFACT])

    def predict(self, context: Any, model_input: np.ndarray, params: Any = None) -> np.ndarray:
        batch = np.asarray(model_input, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[-1] != 4:
            raise ValueError(f"expected (N, H, W, 4) reflectance, got shape {batch.shape}")
        return np.asarray(self.generator.predict(batch, verbose=0, batch_size=8))


def log_generator(generator_file: str | Path, example: np.ndarray, prediction: np.ndarray) -> Any:
    """Log the generator as a pyfunc model with signature and input example; return its info."""
    from mlflow.models import infer_signature

    return mlflow.pyfunc.log_model(
        name="generator",
        python_model=GeneratorModel(),
        artifacts={GENERATOR_ARTIFACT: str(generator_file)},
        signature=infer_signature(example, prediction),
        input_example=example,
    )
