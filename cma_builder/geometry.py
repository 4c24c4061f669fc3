"""Back-projection and visibility (pure numpy, conventions of cameras.py); FPS is in fps.py.

Each op has a naive reference in tests/test_geometry.py.
"""

from __future__ import annotations

import numpy as np


def bounding_sphere(vertices: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(center of the finite vertices' bounding box, radius around it holding every finite vertex,
    bounding-box diagonal). Raises ValueError when no vertex is finite."""
    v = vertices[np.isfinite(vertices).all(axis=1)]
    if not len(v):
        raise ValueError("the mesh has no finite vertices")
    lo, hi = v.min(axis=0), v.max(axis=0)
    center = (lo + hi) / 2.0
    return center, float(np.linalg.norm(v - center, axis=1).max()), float(np.linalg.norm(hi - lo))


def backproject(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray):
    """Foreground pixels of one view -> (world points (N, 3) float64, pixels (N, 2) int as (v, u)),
    in row-major pixel order. ``depth`` is planar z at the pixel centers."""
    v, u = np.nonzero(mask)
    z = depth[v, u].astype(np.float64)
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=1)
    r, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    return (cam - t) @ r, np.stack([v, u], axis=1)


def visibility(points: np.ndarray, depth: np.ndarray, mask: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray,
               tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Project points (F, 3) into every view -> (pixels (F, V, 2) float32 as (v, u), visible (F, V) bool).

    Visible in a view: the point is in front of the camera and, for at least one of the four
    pixel centers around its projection (floor/floor+1 of v and u), that pixel is inside the
    image, in the mask, and the point's camera z exceeds its depth by at most ``tolerance``.
    (The four neighbours, not the nearest pixel alone, so that points on slanted surfaces and
    next to silhouettes are not lost to pixel discretization.)
    """
    V, H, W = depth.shape
    cam = np.einsum("vij,fj->fvi", world_to_cam[:, :3, :3], points) + world_to_cam[None, :, :3, 3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[None, :, 0, 0] * cam[..., 0] / z + K[None, :, 0, 2]
        v = K[None, :, 1, 1] * cam[..., 1] / z + K[None, :, 1, 2]
        v0, u0 = np.floor(v), np.floor(u)
    pixels = np.stack([v, u], axis=-1).astype(np.float32)
    views = np.arange(V)[None, :]
    visible = np.zeros(z.shape, dtype=bool)
    for dv in (0, 1):
        for du in (0, 1):
            ri, ci = v0 + dv, u0 + du
            inside = (z > 0) & (ri >= 0) & (ri < H) & (ci >= 0) & (ci < W)
            ri = np.where(inside, ri, 0).astype(np.int64)
            ci = np.where(inside, ci, 0).astype(np.int64)
            visible |= inside & mask[views, ri, ci] & (z - depth[views, ri, ci] <= tolerance)
    return pixels, visible
