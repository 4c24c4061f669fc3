"""Normalization of point clouds to the unit sphere (Point-BERT's pc_normalize), pure numpy.

One rule: a cloud is centered at its centroid and scaled so that its farthest point has norm 1,
the centroid and radius computed in float64.
"""

from __future__ import annotations

import numpy as np


def normalize_params(points: np.ndarray) -> tuple[float, np.ndarray]:
    """(s, t) with ``s X + t`` of the (P, 3) ``points`` centered at the centroid and of max norm 1."""
    center = points.mean(axis=0, dtype=np.float64)
    radius = float(np.sqrt(((points - center) ** 2).sum(axis=1).max())) if len(points) else 0.0
    s = 1.0 / radius if radius > 1e-12 else 1.0  # an empty view: leave the scale alone
    return s, -s * center


def normalize_clouds(points: np.ndarray) -> np.ndarray:
    """Each (P, 3) cloud of ``points`` (N, P, 3) normalized with :func:`normalize_params` -> float32."""
    out = np.empty_like(points, dtype=np.float32)
    for i, p in enumerate(points):
        s, t = normalize_params(p)
        out[i] = p * s + t
    return out
