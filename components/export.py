"""Earth Engine → Cloud Storage export, assembled into a split dataset."""

from kfp import dsl


def export(
    profile: str,
    overrides: list,
    region: str,
    start: str,
    end: str,
    max_cloud_percent: float,
    bucket: str,
    prefix: str,
    n_images: int,
    dataset: dsl.Output[dsl.Dataset],
) -> str:
    """Export L1C/L2A pairs for ``region`` and dates; returns the dataset digest."""
    from s2ac.orchestration import stages as steps

    settings = {
        "data.earthengine.region": region, "data.earthengine.start": start,
        "data.earthengine.end": end, "data.earthengine.max_cloud_percent": max_cloud_percent,
        "data.earthengine.bucket": bucket, "data.earthengine.prefix": prefix,
        "data.earthengine.n_images": n_images,
    }  # fmt: skip
    return steps.export(dataset.path, steps.config_for(profile, overrides, settings=settings))
