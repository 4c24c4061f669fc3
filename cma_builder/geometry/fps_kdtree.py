"""Farthest point sampling with a kd-bucket kernel (numba): the rule of fps.py, about 8x faster.

``farthest_point_sample`` here returns the same indices as ``fps.farthest_point_sample`` (its
naive reference) on float32 points, bit for bit; points are converted to float32.

The kernel splits each cloud into kd-tree leaves of at most ``LEAF`` points with their
bounding boxes, and keeps each leaf's largest remaining distance. A new sample can only lower
the distance of points nearer to it than their current distance; a leaf whose box is at least
its largest distance away from the sample therefore cannot change and is skipped. The box
distance is a lower bound even after float rounding (subtraction, squaring and addition are
monotone), so skipping never changes a result. Once a few hundred points are chosen only the
leaves around each new sample are touched: about 8x faster than the dense form on 224 px views
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cma_builder.geometry.fps import repeat_short, start_indices

LEAF = 256  # points per kd leaf (measured on 224 px views: 128-512 within 15%, 32 is 1.6x slower)


def farthest_point_sample(points: np.ndarray, k: int, start: int | str = 0, counts: np.ndarray | None = None,
                          threads: int = 1) -> np.ndarray:
    """Batched exact FPS of (B, N, 3) ``points`` -> indices (B, k), as ``fps.farthest_point_sample``.

    With ``threads`` > 1 the batch is split across threads (the kernel releases the GIL; same result).
    """
    points = np.asarray(points, dtype=np.float32)
    counts = np.full(len(points), points.shape[1]) if counts is None else np.asarray(counts)
    starts = start_indices(points, counts, start)
    out = np.zeros((len(points), k), dtype=np.int64)

    def run(rows: np.ndarray) -> None:
        for b in rows:
            n = int(counts[b])
            if n:
                xyz = np.ascontiguousarray(points[b, :n].T)
                _bucket_fps(xyz[0], xyz[1], xyz[2], int(starts[b]), min(k, n), LEAF, out[b])

    rows = np.arange(len(points))
    if threads > 1 and len(points) > 1:
        from concurrent.futures import ThreadPoolExecutor

        parts = np.array_split(rows, min(threads, len(points)))
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(run, parts))
    else:
        run(rows)
    return repeat_short(out, counts)


@njit(cache=True, nogil=True)
def _kd_leaves(x, y, z, leaf):
    """Permutation of the points grouped into kd leaves of <= ``leaf`` points, and leaf bounds."""
    n = len(x)
    order = np.arange(n)
    bounds = np.empty(2 * (n // max(leaf // 2, 1) + 2), np.int64)
    stack = np.empty((128, 2), np.int64)
    stack[0, 0], stack[0, 1] = 0, n
    top, nleaves = 1, 0
    while top:
        top -= 1
        lo, hi = stack[top, 0], stack[top, 1]
        if hi - lo <= leaf:
            bounds[2 * nleaves], bounds[2 * nleaves + 1] = lo, hi
            nleaves += 1
            continue
        seg = order[lo:hi]
        vx, vy, vz = x[seg], y[seg], z[seg]
        sx, sy, sz = vx.max() - vx.min(), vy.max() - vy.min(), vz.max() - vz.min()
        vals = vx if sx >= sy and sx >= sz else (vy if sy >= sz else vz)  # split the widest axis
        part = np.argsort(vals, kind="mergesort")
        order[lo:hi] = seg[part]
        mid = lo + (hi - lo) // 2
        stack[top, 0], stack[top, 1] = lo, mid
        stack[top + 1, 0], stack[top + 1, 1] = mid, hi
        top += 2
    return order, bounds[: 2 * nleaves].reshape(nleaves, 2)


@njit(cache=True, nogil=True)
def _bucket_fps(x, y, z, start, k, leaf, out):
    """Write ``k`` FPS indices (into x/y/z) to ``out``, starting at index ``start``."""
    order, bounds = _kd_leaves(x, y, z, leaf)
    px, py, pz = x[order], y[order], z[order]
    nb = len(bounds)
    lo = np.empty((nb, 3), np.float32)
    hi = np.empty((nb, 3), np.float32)
    for b in range(nb):
        s, e = bounds[b, 0], bounds[b, 1]
        lo[b, 0], hi[b, 0] = px[s:e].min(), px[s:e].max()
        lo[b, 1], hi[b, 1] = py[s:e].min(), py[s:e].max()
        lo[b, 2], hi[b, 2] = pz[s:e].min(), pz[s:e].max()
    dist = np.full(len(x), np.inf, np.float32)
    bmax = np.full(nb, np.inf, np.float32)
    barg = np.zeros(nb, np.int64)  # position (in the permuted arrays) of each leaf's farthest point
    zero = np.float32(0.0)
    cur = start
    for i in range(k):
        out[i] = cur
        cx, cy, cz = x[cur], y[cur], z[cur]
        for b in range(nb):
            dx = lo[b, 0] - cx if cx < lo[b, 0] else (cx - hi[b, 0] if cx > hi[b, 0] else zero)
            dy = lo[b, 1] - cy if cy < lo[b, 1] else (cy - hi[b, 1] if cy > hi[b, 1] else zero)
            dz = lo[b, 2] - cz if cz < lo[b, 2] else (cz - hi[b, 2] if cz > hi[b, 2] else zero)
            if (dx * dx + dy * dy) + dz * dz >= bmax[b]:
                continue  # no point of this leaf is nearer to the new sample than to the chosen ones
            best, arg = np.float32(-1.0), -1
            for j in range(bounds[b, 0], bounds[b, 1]):
                ex, ey, ez = px[j] - cx, py[j] - cy, pz[j] - cz
                d = (ex * ex + ey * ey) + ez * ez
                if d < dist[j]:
                    dist[j] = d
                d = dist[j]
                if d > best or (d == best and order[j] < order[arg]):
                    best, arg = d, j
            bmax[b], barg[b] = best, arg
        best, arg = np.float32(-1.0), -1
        for b in range(nb):
            if bmax[b] > best or (bmax[b] == best and order[barg[b]] < order[arg]):
                best, arg = bmax[b], barg[b]
        cur = order[arg]
