"""Exact k-nearest neighbours between two batched point sets of any channel count."""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:  # optional CUDA accelerator; everything works without it
    import pytorch3d.ops as _P3D
except (ImportError, OSError):  # OSError: a pytorch3d build that does not match this torch
    _P3D = None

HAS_PYTORCH3D = _P3D is not None

# Upper bound on the (B, m, N, C) difference tensor materialized per chunk (64M elements).
_MAX_CHUNK_ELEMENTS = 1 << 26


def _pytorch3d_for(t: Tensor, dtypes: tuple[torch.dtype, ...]):
    """``pytorch3d.ops`` if it may handle ``t`` (installed, CUDA tensor, supported dtype, not disabled
    by ``PCSSL_NO_PYTORCH3D=1``); else None."""
    if _P3D is None or os.environ.get("PCSSL_NO_PYTORCH3D", "") not in ("", "0"):
        return None
    return _P3D if (t.is_cuda and t.dtype in dtypes) else None


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype distances are computed in: the input's, but at least float32."""
    return torch.promote_types(dtype, torch.float32)


def _check(query: Tensor, points: Tensor, k: int) -> None:
    if query.dim() != 3 or points.dim() != 3:
        raise ValueError(f"knn expects (B, M, C) and (B, N, C) tensors, got {tuple(query.shape)} and "
                         f"{tuple(points.shape)}")
    if query.shape[0] != points.shape[0] or query.shape[2] != points.shape[2]:
        raise ValueError(f"knn: batch size and channel count must match, got {tuple(query.shape)} and "
                         f"{tuple(points.shape)}")
    if not 0 <= k <= points.shape[1]:
        raise ValueError(f"knn: k={k} must be in [0, N={points.shape[1]}] (number of points to search)")


def _pairwise_dist2(query: Tensor, points: Tensor) -> Tensor:
    """(B, m, N) exact squared distances: the differences are squared and summed, no matmul expansion."""
    diff = query[:, :, None, :] - points[:, None, :, :]
    return diff.square_().sum(-1)


def knn(query: Tensor, points: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest ``points`` of every ``query`` point, by exact squared Euclidean distance.

    Args:
        query: (B, M, C) query points (any C, e.g. 3 for xyz or 64 for DGCNN features).
        points: (B, N, C) points searched.
        k: neighbours per query, ``0 <= k <= N``.

    Returns:
        dist2: (B, M, k) squared distances, ascending along the last dim, in the (promoted) input
            dtype but at least float32. Differentiable w.r.t. ``query`` and ``points`` through the
            selected pairs (the selection itself is piecewise constant).
        idx: (B, M, k) int64 indices into ``points``. Equal distances are ordered by lower index.

    Distances are computed as sum_c (q_c - p_c)^2 (not |q|^2 + |p|^2 - 2 q.p, which cancels
    catastrophically for close points), in chunks of query rows so that at most ~64M difference
    elements are alive at once. With pytorch3d installed, CUDA float32/float64 inputs go to
    ``pytorch3d.ops.knn_points`` (same distances; order among exactly equal distances may differ);
    ``PCSSL_NO_PYTORCH3D=1`` disables that.
    """
    _check(query, points, k)
    p3d = _pytorch3d_for(query, (torch.float32, torch.float64))
    if p3d is not None and points.dtype == query.dtype and k > 0 and query.shape[1] > 0:
        out = p3d.knn_points(query, points, K=k, return_sorted=True)
        return out.dists, out.idx

    B, M, C = query.shape
    N = points.shape[1]
    dtype = _compute_dtype(torch.promote_types(query.dtype, points.dtype))
    q, p = query.to(dtype), points.to(dtype)
    rows = max(1, _MAX_CHUNK_ELEMENTS // max(1, B * N * C))
    with torch.no_grad():
        # chunks concatenated, not written into a preallocated output: torch.compile (inductor)
        # has returned wrong values for such slice writes followed by a gather (see ops/fps.py)
        dists, idxs = [q.new_empty((B, 0, k))], [torch.empty((B, 0, k), dtype=torch.long, device=query.device)]
        for start in range(0, M, rows):
            d = _pairwise_dist2(q[:, start:start + rows], p)
            d, i = d.sort(dim=-1, stable=True)  # stable: ties keep index order
            dists.append(d[..., :k])
            idxs.append(i[..., :k])
        dist2, idx = torch.cat(dists, dim=1), torch.cat(idxs, dim=1)
    if torch.is_grad_enabled() and (query.requires_grad or points.requires_grad):
        # Recompute the k selected distances with autograd (cheap: B*M*k*C).
        nn = p.gather(1, idx.reshape(B, M * k, 1).expand(B, M * k, C)).reshape(B, M, k, C)
        dist2 = (q[:, :, None, :] - nn).square().sum(-1)
    return dist2, idx


def knn_graph(x: Tensor, k: int) -> Tensor:
    """(B, N, C) -> (B, N, k) int64 indices of each point's k nearest points of the same set (itself
    included), by ``|x_i|^2 - 2 x_i.x_j + |x_j|^2`` from one matmul and ``topk`` (DGCNN's feature-space
    graph). Much faster than :func:`knn` for large C, at the price of rounding: pairs whose distances
    differ by less than ~1e-6 of |x|^2 may swap. Not differentiable (the graph is a selection)."""
    _check(x, x, k)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):  # bf16 would blur the ranking
        x = x.to(_compute_dtype(x.dtype))
        sq = x.square().sum(-1)
        neg_dist2 = 2 * x @ x.transpose(1, 2) - sq[:, :, None] - sq[:, None, :]
        return neg_dist2.topk(k, dim=-1).indices
