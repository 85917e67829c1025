"""How far apart two unit vectors can be and still score at least a threshold.

The angle between unit vectors is a distance on the sphere, so for rows q and
x and any centroid c,

    angle(q, x) >= |angle(q, c) - angle(x, c)|.

Two rows whose angles to one centroid differ by more than the threshold's
angle cannot pair. The recall's exact search (`recall.py`) and a night's search
of the old rows against the new (`approximate.search_partitions`) skip rows by
this bound; `reach` gives way by the worst-case error of float32 products, so
what they skip could not have reached the threshold in float32 either.
"""

from __future__ import annotations

import math

import numpy as np


def angle_slack(dim: int) -> tuple[float, float]:
    """`(cosine error, angle error)` that bound float32 products of `dim`-wide unit
    vectors: a sum of `dim` products is within `dim` unit roundoffs of the true
    cosine (doubled for the vectors' own normalisation), and an error e in a cosine
    moves its angle by at most sqrt(2e), the worst case being near angle 0."""
    cos_err = 2.0 * dim * 2.0**-24 + 1e-6
    return cos_err, 1.01 * math.sqrt(2.0 * cos_err)


def reach(threshold: float, dim: int) -> float:
    """The widest gap between two rows' float32-computed angles to one centroid at
    which their float32 score can still be `threshold` or more."""
    cos_err, angle_err = angle_slack(dim)
    return math.acos(min(1.0, max(-1.0, threshold - cos_err))) + 2.0 * angle_err


def angles(cosines: np.ndarray) -> np.ndarray:
    """float32 angles of float32 cosines (clipped: rounding can step past +-1)."""
    return np.arccos(np.clip(cosines, -1.0, 1.0)).astype(np.float32, copy=False)


def probe_scores(x: np.ndarray, centroids: np.ndarray, probes: np.ndarray,
                 chunk: int = 1024) -> np.ndarray:
    """`[N, nprobe]` float32: each row's score against each centroid it probes (what
    `assign` returns beside the probes, for probes kept without their scores)."""
    out = np.empty(probes.shape, np.float32)
    for s in range(0, len(x), chunk):  # small chunks: the gathered centroids stay in cache
        out[s:s + chunk] = np.einsum("ij,ikj->ik", x[s:s + chunk], centroids[probes[s:s + chunk]])
    return out
