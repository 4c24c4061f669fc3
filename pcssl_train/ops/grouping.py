"""Indexing points and splitting clouds into local patches (Point-MAE's ``Group``)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .fps import farthest_point_sample
from .knn import knn


class Patches(NamedTuple):
    """Local patches of a batch of clouds; G patches of K points each."""

    center: Tensor  # (B, G, 3) patch centers (farthest point samples of the cloud)
    neighborhood: Tensor  # (B, G, K, 3) the K nearest points of each center, minus the center
    idx: Tensor  # (B, G, K) int64 indices of those points in the cloud


def gather_points(points: Tensor, idx: Tensor) -> Tensor:
    """``out[b, s...] = points[b, idx[b, s...]]``: rows of ``points`` selected per batch element.

    Args:
        points: (B, N, C).
        idx: (B, *S) int64 indices in ``[0, N)``, any number of trailing dims.

    Returns:
        (B, *S, C), differentiable w.r.t. ``points``.
    """
    if points.dim() != 3 or idx.dim() < 1 or idx.shape[0] != points.shape[0]:
        raise ValueError(f"gather_points expects points (B, N, C) and idx (B, ...), got {tuple(points.shape)} "
                         f"and {tuple(idx.shape)}")
    B, _, C = points.shape
    flat = idx.reshape(B, -1, 1).expand(-1, -1, C)
    return points.gather(1, flat).reshape(*idx.shape, C)


def group_patches(xyz: Tensor, num_groups: int, group_size: int) -> Patches:
    """Split each cloud into ``num_groups`` overlapping patches of ``group_size`` points.

    Centers are the farthest point samples of the cloud; each patch holds the ``group_size`` points
    nearest to its center (kNN of the centers in the whole cloud, nearest first, so the first point of
    each patch is the center itself unless the cloud has duplicates), expressed relative to the center.
    This is Point-MAE's ``Group`` module. ``center`` and ``neighborhood`` are differentiable w.r.t.
    ``xyz``; the selection itself is not.

    Args:
        xyz: (B, N, 3) clouds.
        num_groups: G, ``<= N``.
        group_size: K, ``<= N``.
    """
    center = gather_points(xyz, farthest_point_sample(xyz, num_groups))
    _, idx = knn(center.detach(), xyz.detach(), group_size)
    neighborhood = gather_points(xyz, idx) - center[:, :, None, :]
    return Patches(center, neighborhood, idx)


def normalize_patches(neighborhood: Tensor, eps: float = 1e-6) -> Tensor:
    """Scale each patch to unit spread, as in SeRP's per-patch normalization.

    Every patch is divided by one scalar, ``std + eps``, where ``std`` is the standard deviation of
    all its K * 3 coordinate values (``torch.std``'s default, ``correction=1``); ``eps`` keeps degenerate
    patches (all points equal) finite, gradients included. The shape is preserved (isotropic
    scaling) and the patch is not re-centred: coordinates stay relative to the patch center.
    Multiply by ``std + eps`` to undo.

    Args:
        neighborhood: (..., K, 3) patches, e.g. ``Patches.neighborhood`` of shape (B, G, K, 3).

    Returns:
        Tensor of the same shape, differentiable.
    """
    var = neighborhood.var(dim=(-2, -1), correction=1, keepdim=True)
    std = var.clamp_min(torch.finfo(var.dtype).tiny).sqrt()  # finite gradient for degenerate patches
    return neighborhood / (std + eps)
