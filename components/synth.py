"""The embedded dataset: the real Sentinel-2 scene under sampled 6S atmospheres."""

from kfp import dsl


def synth(profile: str, overrides: list, dataset: dsl.Output[dsl.Dataset]) -> str:
    """Build TOA/SR pairs; returns the dataset digest (an input of later tasks' cache keys)."""
    from s2ac.orchestration import stages

    return stages.synth(stages.config_for(profile, overrides), dataset.path).digest
