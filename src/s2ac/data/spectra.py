"""Measured spectra re-mixed onto real ground: spectral diversity where real scenes are scarce.

The package ``earthlib`` (MIT) ships 7261 reflectance spectra at 10 nm: 4185 measured soils
(ICRAF-ISRIC), 888 measured urban materials (roofs, asphalt, concrete, paint ...), 2000 PROSAIL
canopies, litter, bark and char. :func:`library` integrates each over the Sentinel-2A spectral
responses of B2, B3, B4 and B8 (Py6S's ESA tables).

:func:`repaint` keeps a real patch's spatial structure and replaces its materials. Each pixel is
unmixed into three fractions (vegetation, bare ground, water; least squares with the fractions
summing to one) of fixed reference endmembers; the unexplained remainder (texture, other
materials) is kept as a residual. The patch is rebuilt with the same fractions and residual but a
canopy and a bare-ground material (a soil, or an urban material) drawn from the library::

    rho'(x) = f_veg(x) E'_veg + f_bare(x) E'_bare + f_water(x) E_water + (rho(x) - F(x) E)

The vegetated share gets a canopy, or (in 40 % of draws) a soil or litter: a fallow or harvested
field. So a field stays a field and a road stays a line, but their spectra are those of another
crop, a bare field, another soil or another roof: the cropland, desert and urban spectra that the
real scenes lack.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache

import numpy as np

from s2ac.bands import BAND_NAMES
from s2ac.data.atmospheres import choose
from s2ac.data.sources import package_data_dir

#: Reference endmembers (B2, B3, B4, B8) used to unmix the real patch.
REFERENCE = {
    "vegetation": np.array([0.03, 0.06, 0.035, 0.35]),
    "bare": np.array([0.10, 0.14, 0.18, 0.25]),
    "water": np.array([0.05, 0.05, 0.03, 0.01]),
}
#: Bare-ground draws: soils (and sand), urban materials, or non-photosynthetic vegetation.
BARE_GROUPS = {"soil": 0.55, "built": 0.35, "npv": 0.1}
#: What the vegetated share becomes: a canopy (growing crops, forest), or a fallow or harvested
#: field (soil, litter): in the dry season much of India's cropland is bare.
CANOPY_GROUPS = {"vegetation": 0.6, "soil": 0.3, "npv": 0.1}


@dataclass(frozen=True)
class Library:
    """Band reflectances (n, 4) per material group, and where they come from."""

    groups: dict[str, np.ndarray]
    source: str

    def draw(self, rng: np.random.Generator, group: str) -> np.ndarray:
        spectra = self.groups[group]
        return spectra[int(rng.integers(0, len(spectra)))]


def _srf_weights(wavelengths_um: np.ndarray, band: str) -> np.ndarray:
    from s2ac.physics.sixs import srf

    start, _, values = srf(band, "S2A")
    grid = start + 0.0025 * np.arange(values.size)
    response = np.interp(wavelengths_um, grid, values, left=0.0, right=0.0)
    return response / response.sum()


@cache
def library() -> Library:
    """earthlib's spectra as Sentinel-2 band reflectances, grouped."""
    root = package_data_dir("earthlib")
    header = (root / "spectra.sli.hdr").read_text()
    text = header[header.index("wavelength = {") + len("wavelength = {") :]
    wavelengths = np.array([float(v) for v in text[: text.index("}")].split(",")])
    with open(root / "spectra.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    spectra = np.fromfile(root / "spectra.sli", dtype="<f4").reshape(len(rows), wavelengths.size)
    # Integrate over each SRF on a 1 nm grid (the library is sampled every 10 nm).
    fine = np.arange(0.40, 0.95, 0.001)
    resampled = np.stack([np.interp(fine, wavelengths, s) for s in spectra])
    bands = np.stack([resampled @ _srf_weights(fine, b) for b in BAND_NAMES], axis=-1)
    kinds = {"soil": ("bare",), "built": ("built",), "npv": ("npv", "burned"),
             "vegetation": ("vegetation",)}  # fmt: skip
    level2 = np.array([row["LEVEL_2"] for row in rows])
    groups = {}
    for name, members in kinds.items():
        chosen = bands[np.isin(level2, members)]
        groups[name] = chosen[np.all((chosen > 0.005) & (chosen < 1.0), axis=1)]
    return Library(groups, "earthlib 1.1.0 spectra.sli (MIT), S2A SRFs")


def unmix(surface: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractions (..., 3) of the reference endmembers (vegetation, bare, water) summing to one,
    clipped to [0, 1], and the residual (..., 4) they leave."""
    endmembers = np.stack(list(REFERENCE.values()))  # (3, 4)
    weight = 10.0  # enforces the sum-to-one row strongly
    design = np.vstack([endmembers.T, weight * np.ones((1, 3))])  # (5, 3)
    pixels = surface.reshape(-1, 4).astype(np.float64)
    target = np.hstack([pixels, np.full((pixels.shape[0], 1), weight)])
    fractions = np.linalg.lstsq(design, target.T, rcond=None)[0].T
    fractions = np.clip(fractions, 0.0, 1.0)
    fractions /= np.maximum(fractions.sum(axis=1, keepdims=True), 1e-6)
    residual = pixels - fractions @ endmembers
    shape = surface.shape[:-1]
    return fractions.reshape(*shape, 3), residual.reshape(*shape, 4)


def repaint(surface: np.ndarray, rng: np.random.Generator, lib: Library | None = None):
    """The patch with a drawn canopy and bare-ground material (see the module docstring);
    returns the new surface (float32, clipped to [0, 1.2]) and the names of the draws."""
    lib = lib or library()
    fractions, residual = unmix(surface)
    canopy_group = choose(rng, CANOPY_GROUPS)
    bare_group = choose(rng, BARE_GROUPS)
    canopy = lib.draw(rng, canopy_group)
    bare = lib.draw(rng, bare_group)
    endmembers = np.stack([canopy, bare, REFERENCE["water"]])
    out = fractions @ endmembers + residual
    draws = {"canopy": canopy_group, "bare": bare_group}
    return np.clip(out, 0.0, 1.2).astype(np.float32), draws
