"""Farthest point sampling (deterministic, batched); the rule of ``cma_builder.geometry.fps`` in torch."""

from __future__ import annotations

import torch
from torch import Tensor

from cma_builder.geometry.fps import CENTROID

from .knn import _compute_dtype, _pytorch3d_for


def farthest_point_sample(xyz: Tensor, n: int, start: int | str = 0) -> Tensor:
    """Indices of ``n`` points of each cloud chosen by iterative farthest point sampling.

    The rule of ``cma_builder.geometry.fps``: the first sample is index ``start`` of each cloud (default
    0, as pointnet2_ops' ``furthest_point_sample`` and pytorch3d's
    ``sample_farthest_points(random_start_point=False)``) or, for ``"centroid"``, the point farthest
    from the cloud's centroid; each next one is the point with the largest squared distance to the
    set selected so far, ties going to the lowest index. Deterministic. Indices are distinct while
    the cloud has points not yet covered; once every point coincides with a selected one (fewer than
    ``n`` distinct points), the first maximal index (0 after a start at 0) is repeated.

    Args:
        xyz: (B, N, C) points (C is 3 for xyz; any C works). Any float dtype; distances are computed
            in float32 or wider.
        n: samples per cloud, ``0 <= n <= N``.
        start: the first sample's index (``0 <= start < N``) or ``"centroid"``.

    Returns:
        (B, n) int64 indices into ``xyz``; not differentiable (gather the points with
        ``gather_points`` to get gradients w.r.t. the coordinates).

    Costs O(n * N) per cloud in ``n`` vectorized steps. With pytorch3d installed, CUDA float32/16
    inputs with ``start=0`` go to ``pytorch3d.ops.sample_farthest_points`` (same result up to ties);
    ``PCSSL_NO_PYTORCH3D=1`` disables that.
    """
    if xyz.dim() != 3:
        raise ValueError(f"farthest_point_sample expects a (B, N, C) tensor, got shape {tuple(xyz.shape)}")
    B, N, _ = xyz.shape
    if not 0 <= n <= N:
        raise ValueError(f"farthest_point_sample: cannot sample n={n} points from clouds of N={N} points "
                         f"(need 0 <= n <= N)")
    if start != CENTROID and (isinstance(start, str) or (N and not 0 <= start < N)):
        raise ValueError(f"farthest_point_sample: start must be {CENTROID!r} or an index below N={N}, got {start!r}")
    p3d = _pytorch3d_for(xyz, (torch.float32, torch.float16, torch.bfloat16))
    if p3d is not None and n > 0 and start == 0:
        return p3d.sample_farthest_points(xyz.detach(), K=n, random_start_point=False)[1]

    with torch.no_grad():
        pts = xyz.detach().to(_compute_dtype(xyz.dtype))
        if n == 0:
            return torch.zeros((B, 0), dtype=torch.long, device=xyz.device)
        batch = torch.arange(B, device=xyz.device)
        min_dist2 = torch.full((B, N), float("inf"), dtype=pts.dtype, device=xyz.device)
        if start == CENTROID:
            last = (pts - pts.mean(dim=1, keepdim=True)).square().sum(-1).argmax(dim=-1)
        else:
            last = torch.full((B,), start, dtype=torch.long, device=xyz.device)
        chosen = [last]
        # Out-of-place on purpose: with in-place updates (minimum(..., out=), idx[:, i] = last) the
        # torch.compile (inductor) build of FPS followed by a gather returned other indices than eager.
        for _ in range(1, n):
            d = (pts - pts[batch, last][:, None, :]).square().sum(-1)
            min_dist2 = torch.minimum(min_dist2, d)
            last = min_dist2.argmax(dim=-1)  # first maximal index on ties
            chosen.append(last)
        return torch.stack(chosen, dim=1)
