"""Farthest point sampling: the kd-bucket kernel against the dense numpy form, same inputs, same run.

Per object, what the render workers do: FPS of every view's back-projected foreground pixels to
``--view-points``, then of their union to ``--fused-points``. Inputs are the depth maps of a
rendered dataset (``--dataset``, e.g. one made by ``cma-build render``) or, by default, analytic
depth maps of a sphere filling the frame at 224 px x 12 views (about 24k foreground pixels each).
Checks that both forms return identical indices and prints seconds per object and the ratio.

    python benchmarks/fps_throughput.py
    python benchmarks/fps_throughput.py --dataset out/demo --objects 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cma_builder.geometry.cameras import ViewpointSpec, camera_rig
from cma_builder.geometry import fps, fps_kdtree
from cma_builder.geometry.visibility import backproject


def sphere_views(resolution: int, views: int, radius: float = 0.8):
    """Depth (V, R, R), mask, K, world_to_cam of a sphere of ``radius`` seen by the default ring rig."""
    K, w2c = camera_rig(ViewpointSpec("ring", views), "sphere", np.zeros(3), 1.0, 40.0, resolution)
    v, u = np.mgrid[0:resolution, 0:resolution].astype(np.float64)
    depth = np.zeros((views, resolution, resolution), np.float32)
    for k in range(views):
        rays = np.stack([(u - K[k, 0, 2]) / K[k, 0, 0], (v - K[k, 1, 2]) / K[k, 1, 1], np.ones_like(u)], axis=-1)
        rot, t = w2c[k, :3, :3], w2c[k, :3, 3]
        origin, dirs = -rot.T @ t, rays @ rot  # world-frame ray directions with planar z = 1
        a, b, c = (dirs ** 2).sum(-1), 2 * dirs @ origin, origin @ origin - radius ** 2
        disc = b * b - 4 * a * c
        depth[k] = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0)
    return depth, depth > 0, K, w2c


def objects(args) -> list[tuple]:
    if args.dataset is None:
        return [sphere_views(args.resolution, args.views)] * args.objects
    from cma_builder.format.reader import DatasetReader

    reader = DatasetReader.open(args.dataset)
    return [tuple(reader.load(o, ["depth", "mask", "K", "world_to_cam"]).values())
            for o in reader.objects()[: args.objects]]


def clouds(depth, mask, K, w2c):
    pts = [backproject(depth[k], mask[k], K[k], w2c[k])[0] for k in range(len(depth))]
    counts = np.array([len(p) for p in pts])
    padded = np.zeros((len(pts), max(int(counts.max()), 1), 3), np.float32)  # the kernel's dtype: both compare equal
    for k, p in enumerate(pts):
        padded[k, : len(p)] = p
    return padded, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, help="a cma-build dataset (default: analytic sphere views)")
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--view-points", type=int, default=2048)
    ap.add_argument("--fused-points", type=int, default=8192)
    args = ap.parse_args()

    fps_kdtree.farthest_point_sample(np.random.default_rng(0).random((1, 64, 3)), 8)  # numba: compile or load
    inputs = [clouds(d, m, K, w) for d, m, K, w in objects(args)]
    times = {"dense": [0.0, 0.0], "kd-bucket": [0.0, 0.0]}
    for padded, counts in inputs:
        for name, sample in (("dense", fps.farthest_point_sample), ("kd-bucket", fps_kdtree.farthest_point_sample)):
            t = time.perf_counter()
            idx = sample(padded, args.view_points, start=fps.CENTROID, counts=counts)
            times[name][0] += time.perf_counter() - t
            union = np.concatenate([padded[k, idx[k, : min(c, args.view_points)]] for k, c in enumerate(counts)])
            t = time.perf_counter()
            fused = sample(union[None], args.fused_points, start=fps.CENTROID)
            times[name][1] += time.perf_counter() - t
            if name == "dense":
                expect = (idx, fused)
            elif not ((idx == expect[0]).all() and (fused == expect[1]).all()):
                raise SystemExit("kd-bucket FPS differs from the dense form")
    n = len(inputs)
    fg = np.mean([c.mean() for _, c in inputs])
    print(f"{n} objects x {args.views} views, {fg:.0f} foreground pixels per view; views -> {args.view_points}, "
          f"union -> {args.fused_points}; one thread; identical indices")
    print(f"{'method':<10} {'views s/obj':>12} {'fused s/obj':>12} {'total s/obj':>12} {'ratio':>7}")
    base = sum(times["dense"]) / n
    for name, (tv, tf) in times.items():
        print(f"{name:<10} {tv / n:>12.3f} {tf / n:>12.3f} {(tv + tf) / n:>12.3f} {base / ((tv + tf) / n):>6.2f}x")


if __name__ == "__main__":
    main()
