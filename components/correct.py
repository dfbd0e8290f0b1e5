"""Batch correction: pin the model once, list the scenes, correct one scene per task."""

from typing import NamedTuple


def pin_model(
    profile: str, overrides: list, model: str
) -> NamedTuple("Outputs", [("model_uri", str), ("version", str)]):  # fmt: skip
    """``model`` (empty: the champion) as ``models:/NAME/VERSION``, resolved once before the
    fan-out: a promotion during the run cannot mix two versions in one batch."""
    from collections import namedtuple

    from s2ac.orchestration import stages

    uri, version = stages.pin_model(stages.config_for(profile, overrides), model or None)
    return namedtuple("Outputs", ["model_uri", "version"])(uri, version)


def find_scenes(profile: str, overrides: list, source: str) -> list:
    """The scenes of ``source`` (a ``gs://`` prefix or a comma-separated list): the fan-out."""
    from s2ac.correction.batch import find_scenes

    return find_scenes(source)


def correct_scene(
    profile: str, overrides: list, scene: str, out_prefix: str, model_uri: str
) -> str:
    """Correct ``scene`` with the pinned model into a COG under ``out_prefix`` (its JSON item
    beside it); the COG's URI."""
    from s2ac.correction.batch import output_for
    from s2ac.orchestration import stages

    config = stages.config_for(profile, overrides)
    return stages.correct(config, scene, output_for(scene, out_prefix), model_uri).output
