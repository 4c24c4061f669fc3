"""SeRP's corruption (section 3.1): shift a few local patches of the cloud by Gaussian offsets."""

from __future__ import annotations

import torch

from ..ops import gather_points, knn


def perturb_patches(xyz: torch.Tensor, num_patches: int = 20, patch_size: int = 20, sigma: float = 0.03):
    """Pick ``num_patches`` random centers per cloud, take each one's ``patch_size`` nearest points
    and add ONE N(0, sigma^2 I) offset to the whole patch (overlapping patches add up).

    (B,N,3) -> (noisy (B,N,3), perturbed (B,N) bool). Draws from the torch RNG of xyz's device.
    """
    b, n, _ = xyz.shape
    num_patches, patch_size = min(num_patches, n), min(patch_size, n)
    centers = torch.rand(b, n, device=xyz.device).argsort(dim=1)[:, :num_patches]      # distinct, random
    _, idx = knn(gather_points(xyz, centers), xyz, patch_size)                          # (B,C,k)
    offsets = torch.randn(b, num_patches, 1, 3, device=xyz.device, dtype=xyz.dtype) * sigma
    shift = torch.zeros_like(xyz).index_put_(
        (torch.arange(b, device=xyz.device)[:, None, None].expand_as(idx), idx),
        offsets.expand(-1, -1, patch_size, -1), accumulate=True)
    perturbed = torch.zeros(b, n, dtype=torch.bool, device=xyz.device)
    perturbed[torch.arange(b, device=xyz.device)[:, None, None].expand_as(idx), idx] = True
    return xyz + shift, perturbed
