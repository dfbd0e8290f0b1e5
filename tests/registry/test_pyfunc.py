"""The pyfunc's declared requirements: what serving it imports, pinned to this environment."""

from __future__ import annotations

import importlib.metadata as metadata

from s2ac.registry.pyfunc import pip_requirements


def test_requirements_name_tensorflow_and_keras_at_the_installed_versions():
    pins = dict(pin.split("==") for pin in pip_requirements())
    assert pins["keras"] == metadata.version("keras")
    assert pins["numpy"] == metadata.version("numpy")
    assert pins["mlflow"] == metadata.version("mlflow")
    tensorflow = {"tensorflow", "tensorflow-cpu"} & set(pins)
    assert len(tensorflow) == 1  # whichever distribution is installed, exactly once
    [name] = tensorflow
    assert pins[name] == metadata.version(name)
