"""Earth Engine → Cloud Storage export, assembled into a split dataset.

Region, dates, bucket and the rest are ``data.earthengine.*`` settings: give them as overrides
(``data.earthengine.region=Kerala``), like every other setting."""

from kfp import dsl


def export(profile: str, overrides: list, dataset: dsl.Output[dsl.Dataset]) -> str:
    """Export L1C/L2A pairs and assemble them; returns the dataset digest."""
    from s2ac.orchestration import stages

    exported = stages.export(stages.config_for(profile, overrides), dataset.path)
    return exported.dataset.digest
