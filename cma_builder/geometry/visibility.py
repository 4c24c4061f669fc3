"""Back-projection and visibility (pure numpy, conventions and ``project`` of cameras.py); FPS is
in fps.py, ray casting of meshes in raycast.py.

Each op has a naive reference in tests/builder/test_geometry.py.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cma_builder.geometry.cameras import camera_center, project


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


def in_image(pixels: np.ndarray, z: np.ndarray, height: int, width: int) -> np.ndarray:
    """In front of the camera and inside the image: -0.5 <= u < W - 0.5 and -0.5 <= v < H - 0.5
    (the pixel areas of integer pixel centers)."""
    v, u = pixels[..., 0], pixels[..., 1]
    with np.errstate(invalid="ignore"):
        return (z > 0) & (v >= -0.5) & (v < height - 0.5) & (u >= -0.5) & (u < width - 0.5)


FirstHit = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (origins (R, 3), directions (R, 3)) -> t (R,)


def segment_visibility(points: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray, height: int, width: int,
                       first_hit: FirstHit, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact visibility of points (F, 3) in every view -> (pixels (F, V, 2) float32 as (v, u), visible (F, V)).

    Visible in view k: the point projects inside the image (``in_image``) and the segment from
    camera k's center c to the point p meets no surface more than ``tolerance`` (OBJ units, along
    the segment) before p. ``first_hit(origins, directions)`` returns, per ray, the smallest t > 0
    at which origin + t * direction meets a surface (inf if none); rays are cast from c with
    direction p - c, so p is at t = 1 and visible iff (1 - t) |p - c| <= tolerance.
    """
    pixels, z = project(points, K, world_to_cam)
    visible = in_image(pixels, z, height, width)
    f, k = np.nonzero(visible)
    if len(f):
        origins = np.stack([camera_center(m) for m in world_to_cam])[k]
        directions = points[f] - origins
        t = np.asarray(first_hit(origins, directions), dtype=np.float64)
        visible[f, k] = (1.0 - t) * np.linalg.norm(directions, axis=1) <= tolerance
    return pixels.astype(np.float32), visible


def depth_judgement(points: np.ndarray, depth: np.ndarray, mask: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray,
                    behind: float, on: float) -> tuple[np.ndarray, np.ndarray]:
    """What the depth maps alone clearly say about each point in each view -> (clearly hidden,
    clearly visible), bool (F, V) each; most points are neither.

    Only the four pixel centers around a point's projection are used, and only when all four are
    inside the image and in the mask. Clearly hidden: the point lies more than ``behind`` behind
    the surface at all four (unless a hole narrower than a pixel opens exactly at it). Clearly
    visible: its depth is within ``on`` of the surface interpolated at its projection (bilinear in
    inverse depth, exact on planes), unless an occluder thinner than ``on`` or narrower than a
    pixel covers exactly it.
    """
    V, H, W = depth.shape
    pix, z = project(points, K, world_to_cam)
    with np.errstate(invalid="ignore"):
        v0, u0 = np.floor(pix[..., 0]), np.floor(pix[..., 1])
        usable = (z > 0) & (v0 >= 0) & (v0 + 1 < H) & (u0 >= 0) & (u0 + 1 < W)
    fv = np.where(usable, pix[..., 0] - v0, 0.0)
    fu = np.where(usable, pix[..., 1] - u0, 0.0)
    v0 = np.where(usable, v0, 0).astype(np.int64)
    u0 = np.where(usable, u0, 0).astype(np.int64)
    views = np.arange(V)[None, :]
    hidden = usable.copy()
    inverse = np.zeros(z.shape)
    for dv in (0, 1):
        for du in (0, 1):
            d = depth[views, v0 + dv, u0 + du].astype(np.float64)
            in_mask = mask[views, v0 + dv, u0 + du]
            usable &= in_mask
            hidden &= in_mask & (z - d > behind)
            with np.errstate(divide="ignore"):
                inverse += (fv if dv else 1 - fv) * (fu if du else 1 - fu) / np.where(in_mask, d, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        visible = usable & (np.abs(z - 1.0 / inverse) <= on)
    return hidden, visible


def depth_test_visibility(points: np.ndarray, depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                          world_to_cam: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """The approximate rule that datasets of format 2 stored as fused_visible (the baseline of
    benchmarks/image_fidelity.py) -> (pixels (F, V, 2) float32 as (v, u), visible (F, V) bool).

    Visible in a view: the point is in front of the camera and, for at least one of the four
    pixel centers around its projection (floor/floor+1 of v and u), that pixel is inside the
    image, in the mask, and the point's camera z exceeds its depth by at most ``tolerance``.
    It misses occluders thinner than a pixel and errs at silhouettes and grazing surfaces.
    """
    V, H, W = depth.shape
    pix, z = project(points, K, world_to_cam)
    v, u = pix[..., 0], pix[..., 1]
    with np.errstate(invalid="ignore"):
        v0, u0 = np.floor(v), np.floor(u)
    pixels = pix.astype(np.float32)
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
