"""Farthest point sampling (FPS): the one rule, and its dense numpy form (no numba).

The rule, shared by ``fps_kdtree.farthest_point_sample`` (numba) and
``pcssl_train.ops.farthest_point_sample`` (torch): the first sample of each cloud is its point
``start``, an index or ``"centroid"`` (the valid point farthest from the valid points' centroid,
the first on ties); each next sample is the point with the largest squared distance to the
samples chosen so far, ties to the lowest index (like ``np.argmax``). Squared distances are
``(dx*dx + dy*dy) + dz*dz``. The builder starts at ``"centroid"``, the trainer at 0.

Here every distance is updated every step, in the points' float dtype (float32 or wider): the
form the kd-tree kernel must equal bit for bit (on float32 points), and the FPS of the trainer.
"""

from __future__ import annotations

import numpy as np

CENTROID = "centroid"


def farthest_point_sample(points: np.ndarray, k: int, start: int | str = 0,
                          counts: np.ndarray | None = None) -> np.ndarray:
    """Batched exact FPS. ``points`` (B, N, C) with the first ``counts[b]`` rows valid (default all)
    -> indices (B, k) int64.

    Where ``counts[b] < k`` all valid points are taken in FPS order and repeated cyclically;
    where ``counts[b] == 0`` the indices are 0.
    """
    points = np.asarray(points)
    points = points.astype(np.promote_types(points.dtype, np.float32), copy=False)
    B, N, C = points.shape
    counts = np.full(B, N) if counts is None else np.asarray(counts)
    valid = np.arange(N)[None, :] < counts[:, None]
    mask = valid if (counts < N).any() else True  # unpadded clouds (the trainer's): no masked update
    coords = [np.ascontiguousarray(points[..., i]) for i in range(C)]
    current = start_indices(points, counts, start)
    dist = np.where(valid, np.inf, -1.0).astype(points.dtype)
    acc, tmp = np.empty_like(dist), np.empty_like(dist)
    rows = np.arange(B)
    out = np.zeros((B, k), dtype=np.int64)
    for i in range(min(k, int(counts.max(initial=0)))):  # past every valid point FPS only repeats
        out[:, i] = current
        for j, c in enumerate(coords):
            buf = acc if j == 0 else tmp
            np.subtract(c, c[rows, current][:, None], out=buf)
            np.multiply(buf, buf, out=buf)
            if j:
                acc += tmp
        np.minimum(dist, acc, out=dist, where=mask)
        current = dist.argmax(axis=1)
    return repeat_short(out, counts)


def start_indices(points: np.ndarray, counts: np.ndarray, start: int | str) -> np.ndarray:
    """(B,) index of each cloud's first sample under the ``start`` rule (0 for an empty cloud)."""
    if start == CENTROID:
        N = points.shape[1]
        valid = np.arange(N)[None, :] < counts[:, None]
        coords = [np.ascontiguousarray(points[..., i]) for i in range(points.shape[2])]
        centroid = [np.where(valid, c, 0).sum(axis=1) / np.maximum(counts, 1) for c in coords]
        spread = sum((c - m[:, None]) ** 2 for c, m in zip(coords, centroid))
        return np.where(valid, spread, -1.0).argmax(axis=1)
    if isinstance(start, str) or not all(0 <= start < n for n in counts if n):
        raise ValueError(f"FPS start must be {CENTROID!r} or an index below every cloud's point count, got {start!r}")
    return np.where(counts > 0, start, 0)


def repeat_short(out: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``out`` (B, k) with each row of fewer than k valid points cycled over its FPS order (0s if empty)."""
    k = out.shape[1]
    for b in np.nonzero(counts < k)[0]:
        out[b] = np.resize(out[b, : counts[b]], k) if counts[b] else 0
    return out
