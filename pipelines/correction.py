"""The batch-correction pipeline: pin the model → list the scenes → ``ParallelFor`` correct.

Its parameters are ``source`` (a ``gs://`` prefix or a comma-separated list of scenes),
``out_prefix`` (where the COGs and their JSON items go), ``model`` (empty: the registry's
champion), ``profile`` and ``overrides``. The model is resolved to ``models:/NAME/VERSION`` once,
before the fan-out, and every scene task gets that pinned URI: a promotion while the run is going
cannot leave the batch corrected by two versions, and every item names the same version.
"""

from typing import Any

from kfp import dsl

from pipelines.resources import mlflow_client, on_gpu, small, uncached, with_retries
from s2ac.config import PipelineConfig

#: Scenes corrected at once (each holds a GPU): the rest queue, so one batch does not take the
#: cluster's whole GPU quota.
SCENES_AT_ONCE = 4


def correct_each(c: Any, config: PipelineConfig) -> Any:
    """``ParallelFor`` over ``scenes``, each corrected with ``model_uri``."""

    # A sub-pipeline, so the loop's inputs are pipeline parameters rather than the outputs of
    # pin-model and find-scenes: kfp.local (2.17) hands the loop item to *every* task-output
    # input of a loop, which would make each scene its own model URI.
    @dsl.pipeline(name="correct-scenes")
    def correct_scenes(
        profile: str, overrides: list, scenes: list, out_prefix: str, model_uri: str
    ) -> None:
        common = {"profile": profile, "overrides": overrides}
        with dsl.ParallelFor(scenes, parallelism=SCENES_AT_ONCE, name="scenes") as scene:
            # GPU: the generator's inference is the whole cost of a scene. A 10980 px tile is
            # 58 x 58 tiles of 256 px at 64 px overlap; the 64-filter U-Net predicts ~1 tile/s
            # on 2 CPU cores (measured), about an hour a scene (a quarter hour on 8 cores); a GPU
            # needs minutes. `-o pipeline.gpu_count=0` at compile time makes it a CPU task of
            # pipeline.train_cpu cores.
            # Retries: reading the scene and writing the COG are Cloud Storage I/O; a rerun
            # replaces the task's own outputs (the item marks them as s2ac's).
            on_gpu(mlflow_client(uncached(with_retries(c.correct_scene(
                **common, scene=scene, out_prefix=out_prefix, model_uri=model_uri,
            ), config))), config)  # fmt: skip

    return correct_scenes


def correction_pipeline(c: Any, config: PipelineConfig) -> Any:
    downstream = correct_each(c, config)

    @dsl.pipeline(
        name="s2ac-correction",
        description="Sentinel-2 scenes under a prefix corrected to surface reflectance COGs "
        "(plus a JSON item each) with one pinned version of the registered generator.",
    )
    def correction(
        source: str,
        out_prefix: str,
        model: str = "",
        profile: str = "default",
        overrides: list = [],  # noqa: B006 - KFP pipeline parameters are declared this way
    ) -> None:
        common = {"profile": profile, "overrides": overrides}
        # Uncached: the champion and the prefix's content change between runs with equal inputs,
        # and the COGs live outside the pipeline root, where a cache hit could not vouch for them.
        pinned = mlflow_client(small(uncached(with_retries(
            c.pin_model(**common, model=model), config
        ))))  # fmt: skip
        found = small(uncached(with_retries(c.find_scenes(**common, source=source), config)))
        downstream(**common, scenes=found.output, out_prefix=out_prefix,
                   model_uri=pinned.outputs["model_uri"])  # fmt: skip

    return correction
