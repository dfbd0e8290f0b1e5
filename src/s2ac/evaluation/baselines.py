"""The five baselines every model is scored beside, as batch methods ``(toa, patch_ids) -> sr``.

* ``identity``, ``dos``, ``6s``: the physics baselines of :mod:`s2ac.physics.corrections`, nothing
  learned and nothing known about the sample.
* ``linear``: per output band, an affine function of the 4 TOA bands (20 numbers) fitted by least
  squares on the train split. The simplest learned correction: a model that does not beat it has
  not earned a GAN.
* ``oracle``: the exact inverse of the forward model under each sample's *true* atmosphere (its
  field over the patch) and surroundings, read from the dataset. The physical floor (only sensor
  noise and quantisation remain); the distance from it is the headroom. Absent for data whose
  atmosphere is unknown (Earth Engine).

``NON_ORACLE`` are the baselines a model must beat (the gate's ``best_baseline``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2ac.bands import BAND_NAMES, N_BANDS, PIXEL_KM
from s2ac.physics.adjacency import environment
from s2ac.physics.corrections import BASELINES as PHYSICS
from s2ac.physics.forward import FieldAtmosphere, invert
from s2ac.physics.lut import Atmosphere, Lut

#: A correction method over a batch: TOA (N, H, W, 4) and the patch ids -> SR (N, H, W, 4).
Method = Callable[[np.ndarray, Sequence[str]], np.ndarray]

NON_ORACLE = ("identity", "dos", "6s", "linear")
ALL_BASELINES = (*NON_ORACLE, "oracle")


def per_image(function: Callable[[np.ndarray], np.ndarray]) -> Method:
    """A per-image correction (H, W, 4) -> (H, W, 4) as a batch method."""
    return lambda toa, ids: np.stack([function(image) for image in toa])


@dataclass(frozen=True)
class LinearMap:
    """SR_b = intercept_b + sum_k weights[k, b] * TOA_k for each output band b."""

    intercept: np.ndarray  # (4,)
    weights: np.ndarray  # (4 inputs, 4 outputs)
    n_pixels: int

    @classmethod
    def fit(cls, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> LinearMap:
        """Least squares over every finite pixel of the (TOA, SR) batches, in float64 normal
        equations (streamed: the train split never has to fit in memory)."""
        gram = np.zeros((N_BANDS + 1, N_BANDS + 1))
        cross = np.zeros((N_BANDS + 1, N_BANDS))
        count = 0
        for toa, sr in pairs:
            x = toa.reshape(-1, N_BANDS).astype(np.float64)
            y = sr.reshape(-1, N_BANDS).astype(np.float64)
            keep = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
            design = np.hstack([np.ones((int(keep.sum()), 1)), x[keep]])
            gram += design.T @ design
            cross += design.T @ y[keep]
            count += int(keep.sum())
        if count <= N_BANDS + 1:
            raise ValueError(f"linear baseline: {count} finite train pixels, too few to fit")
        solution = np.linalg.lstsq(gram, cross, rcond=None)[0]
        return cls(solution[0], solution[1:], count)

    def __call__(self, toa: np.ndarray, ids: Sequence[str] | None = None) -> np.ndarray:
        return (toa.astype(np.float64) @ self.weights + self.intercept).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The 20 coefficients, named: ``{output band: {"intercept": c, "toa_B2": w, ...}}``."""
        return {
            "fitted_on": "train",
            "n_pixels": self.n_pixels,
            "model": "sr_b = intercept + sum_k toa_k * w_kb (least squares per output band)",
            "coefficients": {
                out: {"intercept": float(self.intercept[j])}
                | {f"toa_{inp}": float(self.weights[i, j]) for i, inp in enumerate(BAND_NAMES)}
                for j, out in enumerate(BAND_NAMES)
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearMap:
        coefficients = data["coefficients"]
        intercept = np.array([coefficients[b]["intercept"] for b in BAND_NAMES])
        weights = np.array(
            [[coefficients[out][f"toa_{inp}"] for out in BAND_NAMES] for inp in BAND_NAMES]
        )
        return cls(intercept, weights, int(data.get("n_pixels", 0)))


class Oracle:
    """The exact inverse of the forward model that made each sample (keyed by patch id).

    It knows each sample's true atmosphere: the field of AOT550, water vapour and elevation when
    the dataset records one, and with the adjacency effect the environment reflectance, which it
    takes from the true surface (``uses_truth``: the scorer passes it). Only sensor noise and
    quantisation remain: the floor.
    """

    uses_truth = True

    def __init__(
        self,
        atmospheres: dict[str, Atmosphere],
        fields: dict[str, FieldAtmosphere] | None = None,
        adjacency: bool = False,
        lut: Lut | None = None,
    ) -> None:
        self.atmospheres = atmospheres
        self.fields = fields or {}
        self.adjacency = adjacency
        self.lut = lut or Lut.load()

    def __call__(
        self, toa: np.ndarray, ids: Sequence[str], sr: np.ndarray | None = None
    ) -> np.ndarray:
        missing = [pid for pid in ids if pid not in self.atmospheres]
        if missing:
            raise ValueError(f"oracle: no atmosphere in the manifest for patches {missing[:3]}")
        if self.adjacency and sr is None:
            raise ValueError("oracle: the adjacency effect needs the true surface (sr=...)")
        out = []
        for k, (image, pid) in enumerate(zip(toa, ids, strict=True)):
            field = self.fields.get(pid)
            if field is None:
                out.append(self.lut.inverse(image, self.atmospheres[pid]))
                continue
            env = environment(sr[k], PIXEL_KM) if self.adjacency else None  # type: ignore[index]
            out.append(invert(self.lut, image, field, env))
        return np.stack(out)


def oracle_atmospheres(
    manifest: dict[str, Any], dataset_dir: str | Path | None = None
) -> tuple[Oracle | None, str]:
    """The oracle of a dataset (atmospheres and fields from its manifest), or ``(None, why
    not)`` when it records none."""
    samples = manifest.get("samples") or []
    atmospheres = {}
    for sample in samples:
        if isinstance(sample, dict) and isinstance(sample.get("atmosphere"), dict):
            atmospheres[str(sample["patch_id"])] = Atmosphere(**sample["atmosphere"])
    if not atmospheres:
        return None, (
            f"absent: the manifest of {manifest.get('name', 'this dataset')!r} records no "
            "per-sample atmosphere (real imagery: the true atmosphere is unknown)"
        )
    spec = manifest.get("atmosphere_fields") or {}
    if not spec or dataset_dir is None:
        return Oracle(atmospheres), (
            "available: the table's inverse under each sample's true atmosphere"
        )
    from s2ac.data.synthetic import read_fields

    fields = read_fields(Path(dataset_dir) / spec["file"], atmospheres)
    adjacent = bool(spec.get("adjacency"))
    return Oracle(atmospheres, fields, adjacent), (
        "available: the exact inverse of the forward model under each sample's true atmosphere "
        "field" + (" and true surroundings (adjacency effect)" if adjacent else "")
    )


def physics_method(name: str) -> Method:
    """A physics baseline (identity, dos, 6s) as a batch method."""
    if name not in PHYSICS:
        raise ValueError(f"unknown baseline {name!r}: choose from {list(ALL_BASELINES)}")
    return per_image(PHYSICS[name])
