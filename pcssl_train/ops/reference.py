"""Naive, obviously-correct reference implementations of the ops, for tests only.

Plain python loops over batch elements and points, on python floats (float64): slow, no
vectorization, no chunking, no autograd. Each function mirrors the definition in the docstring of
the op it checks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _dist2(a: list[float], b: list[float]) -> float:
    return sum((u - v) ** 2 for u, v in zip(a, b))


def farthest_point_sample_ref(xyz: Tensor, n: int, start: int | str = 0) -> Tensor:
    """(B, n) FPS indices: start at index ``start`` (or, for "centroid", at the point farthest from the
    centroid), then the point farthest from the chosen set, lowest index on ties."""
    out = []
    for cloud in xyz.double().tolist():
        first = start
        if start == "centroid":
            centroid = [sum(c) / len(cloud) for c in zip(*cloud)]
            spread = [_dist2(p, centroid) for p in cloud]
            first = spread.index(max(spread))
        chosen = [first] if n > 0 else []
        while len(chosen) < n:
            best, best_d = -1, -1.0
            for i, p in enumerate(cloud):
                d = min(_dist2(p, cloud[j]) for j in chosen)
                if d > best_d:  # strict: the first maximum wins
                    best, best_d = i, d
            chosen.append(best)
        out.append(chosen)
    return torch.tensor(out, dtype=torch.long).reshape(len(xyz), n)


def knn_ref(query: Tensor, points: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(dist2, idx), each (B, M, k): for each query, the points sorted by (distance, index), first k."""
    dists, idxs = [], []
    for qs, ps in zip(query.double().tolist(), points.double().tolist()):
        for q in qs:
            ranked = sorted((_dist2(q, p), j) for j, p in enumerate(ps))[:k]
            dists.append([d for d, _ in ranked])
            idxs.append([j for _, j in ranked])
    B, M = query.shape[:2]
    return (torch.tensor(dists, dtype=torch.float64).reshape(B, M, k),
            torch.tensor(idxs, dtype=torch.long).reshape(B, M, k))


def group_patches_ref(xyz: Tensor, num_groups: int, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(center (B, G, C), neighborhood (B, G, K, C), idx (B, G, K)): FPS centers, then for each center
    its K nearest points (sorted by distance, index) minus the center."""
    B, _, C = xyz.shape
    fps = farthest_point_sample_ref(xyz, num_groups).tolist()
    clouds = xyz.double().tolist()
    centers, neighborhoods, idxs = [], [], []
    for b in range(B):
        for i in fps[b]:
            c = clouds[b][i]
            nearest = sorted(range(len(clouds[b])), key=lambda j: (_dist2(clouds[b][j], c), j))[:group_size]
            centers.append(c)
            idxs.append(nearest)
            neighborhoods.append([[p - q for p, q in zip(clouds[b][j], c)] for j in nearest])
    return (torch.tensor(centers, dtype=torch.float64).reshape(B, num_groups, C),
            torch.tensor(neighborhoods, dtype=torch.float64).reshape(B, num_groups, group_size, C),
            torch.tensor(idxs, dtype=torch.long).reshape(B, num_groups, group_size))


def chamfer_distance_ref(x: Tensor, y: Tensor, norm: int = 2) -> Tensor:
    """(B,) Chamfer distance per batch element, straight from the definition."""
    out = []
    for xs, ys in zip(x.double().tolist(), y.double().tolist()):
        d1 = [min(_dist2(p, q) for q in ys) for p in xs]
        d2 = [min(_dist2(p, q) for p in xs) for q in ys]
        if norm == 2:
            out.append(sum(d1) / len(d1) + sum(d2) / len(d2))
        else:
            out.append((sum(map(math.sqrt, d1)) / len(d1) + sum(map(math.sqrt, d2)) / len(d2)) / 2)
    return torch.tensor(out, dtype=torch.float64)
