"""From one object's rendered depth/mask and cameras to its point clouds with pixel maps.

Per view: every foreground pixel back-projected to the world (OBJ) frame, then a fixed-size
cloud by farthest point sampling that keeps each point's pixel. Fused: FPS over the union of
the per-view clouds, with each point's projected pixel and its exact visibility in every view
(a ray cast against the mesh). Array names match the dataset (docs/DATA_FORMAT.md).
"""

from __future__ import annotations

import numpy as np

from cma_builder.geometry.fps import CENTROID
from cma_builder.geometry.fps_kdtree import farthest_point_sample
from cma_builder.geometry.visibility import FirstHit, backproject, segment_visibility


def point_maps(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray, view_points: int,
               fused_points: int, first_hit: FirstHit, tolerance: float, threads: int = 1) -> dict[str, np.ndarray]:
    """``depth``/``mask`` (V, H, W); ``first_hit`` casts rays against the rendered mesh
    (geometry.segment_visibility); ``tolerance`` in OBJ units. Returns the per-object arrays.
    ``threads``: the per-view FPS runs on that many threads (identical result)."""
    V = depth.shape[0]
    clouds = [backproject(depth[k], mask[k], K[k], world_to_cam[k]) for k in range(V)]
    counts = np.array([len(p) for p, _ in clouds])
    n_max = max(int(counts.max()), 1)
    padded = np.zeros((V, n_max, 3))
    for k, (p, _) in enumerate(clouds):
        padded[k, : len(p)] = p
    idx = farthest_point_sample(padded, view_points, start=CENTROID, counts=counts, threads=threads)

    out = {
        "view_points": np.zeros((V, view_points, 3), np.float32),
        "view_pixels": np.full((V, view_points, 2), -1, np.int16),
        "view_point_count": np.minimum(counts, view_points).astype(np.int32),
        "view_foreground": counts.astype(np.int32),
    }
    fused_src = []  # (view, v, u, x, y, z) of the distinct per-view points
    for k, (p, px) in enumerate(clouds):
        if counts[k]:
            out["view_points"][k] = p[idx[k]]
            out["view_pixels"][k] = px[idx[k]]
            distinct = idx[k, : out["view_point_count"][k]]
            fused_src.append(np.concatenate([np.full((len(distinct), 1), k), px[distinct], p[distinct]], axis=1))
    src = np.concatenate(fused_src) if fused_src else np.zeros((0, 6))
    fidx = farthest_point_sample(src[None, :, 3:], fused_points, start=CENTROID)[0]
    fused = src[fidx] if len(src) else np.zeros((fused_points, 6))
    stored = fused[:, 3:].astype(np.float32)  # flags of the points as stored, so that anyone can recompute them
    pixels, visible = segment_visibility(stored.astype(np.float64), K, world_to_cam, depth.shape[1], depth.shape[2],
                                         first_hit, tolerance)
    out.update({
        "fused_points": stored,
        "fused_origin": fused[:, :3].astype(np.int16),  # (view, v, u) it was back-projected from
        "fused_point_count": np.int32(min(len(src), fused_points)),
        "fused_pixels": pixels,
        "fused_visible": visible,
    })
    return out
