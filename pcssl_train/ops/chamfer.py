"""Chamfer distance between batched point sets (Point-MAE's ChamferDistanceL1 / L2)."""

from __future__ import annotations

import torch
from torch import Tensor

from .knn import knn


def nearest_neighbor_dist2(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """For every point of ``x``, its nearest point in ``y``.

    Args:
        x: (B, N, C), y: (B, M, C) with ``M >= 1``.

    Returns:
        d1: (B, N) squared distance ``min_j ||x_i - y_j||^2`` (differentiable w.r.t. x and y).
        idx: (B, N) int64 index of that nearest ``y_j`` (lowest index on ties).
    """
    d, idx = knn(x, y, 1)
    return d[..., 0], idx[..., 0]


def _sqrt0(d: Tensor) -> Tensor:
    """sqrt(d) for d >= 0, with gradient 0 (not inf/NaN) where d == 0."""
    positive = d > 0
    return torch.where(positive, d.clamp_min(torch.finfo(d.dtype).tiny).sqrt(), d.new_zeros(()))


def chamfer_distance(x: Tensor, y: Tensor, norm: int = 2, reduction: str = "mean") -> Tensor:
    """Symmetric Chamfer distance between the clouds ``x`` and ``y`` of each batch element.

    With ``d1_i = min_j ||x_i - y_j||^2`` and ``d2_j = min_i ||x_i - y_j||^2``:

    * ``norm=2`` (Point-MAE ``ChamferDistanceL2``): ``mean_i d1_i + mean_j d2_j``.
    * ``norm=1`` (Point-MAE ``ChamferDistanceL1``): ``(mean_i sqrt(d1_i) + mean_j sqrt(d2_j)) / 2``.

    Args:
        x: (B, N, C), y: (B, M, C) clouds, ``N, M >= 1`` (C is usually 3).
        norm: 1 or 2, see above.
        reduction: ``"mean"`` -> scalar mean over the batch, ``"none"`` -> (B,).

    Differentiable w.r.t. ``x`` and ``y``: gradients flow through the selected nearest pairs (the
    argmin itself is piecewise constant). For ``norm=1`` the gradient of ``sqrt`` at exactly-matching
    pairs (distance 0) is taken as 0 instead of NaN. Computed in the input dtype, at least float32.
    """
    if norm not in (1, 2):
        raise ValueError(f"chamfer_distance: norm must be 1 or 2, got {norm!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"chamfer_distance: reduction must be 'mean' or 'none', got {reduction!r}")
    if x.dim() != 3 or y.dim() != 3 or x.shape[1] == 0 or y.shape[1] == 0:
        raise ValueError(f"chamfer_distance expects non-empty (B, N, C) and (B, M, C) clouds, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    d1, _ = nearest_neighbor_dist2(x, y)
    d2, _ = nearest_neighbor_dist2(y, x)
    if norm == 2:
        dist = d1.mean(-1) + d2.mean(-1)
    else:
        dist = (_sqrt0(d1).mean(-1) + _sqrt0(d2).mean(-1)) / 2
    return dist.mean() if reduction == "mean" else dist
