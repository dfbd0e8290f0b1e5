"""Random TOA/SR patch pairs whose relation is known, for the TFRecord and input-pipeline tests."""

from __future__ import annotations

import numpy as np

SIZE = 32


def make_pairs(n: int, size: int = SIZE, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Random TOA patches with sr = toa * 2 + 0.1 (float32), so a pair's relation is checkable."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        toa = rng.random((size, size, 4), dtype=np.float32)
        pairs.append((toa, toa * 2 + 0.1, f"scene/{i:03d}"))
    return pairs
