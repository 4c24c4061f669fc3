"""SeRP's corruption (section 3.1): shift a few local patches of the cloud by Gaussian offsets."""

from __future__ import annotations

import torch

from ..ops import gather_points, knn

OVERLAPS = ("overwrite", "add")


def perturb_patches(xyz: torch.Tensor, num_patches: int = 20, patch_size: int = 20, sigma: float = 0.03,
                    overlap: str = "add"):
    """Pick ``num_patches`` random centers per cloud, take each one's ``patch_size`` nearest points
    and shift the whole patch by ONE N(0, sigma^2 I) offset. A point in several patches gets
    ``overlap="overwrite"``: the offset of the last patch drawn (the official SeRP code), or
    ``"add"``: the sum of their offsets.

    (B,N,3) -> (noisy (B,N,3), perturbed (B,N) bool). Draws from the torch RNG of xyz's device.
    """
    if overlap not in OVERLAPS:
        raise ValueError(f"overlap must be one of {OVERLAPS}, got {overlap!r}")
    b, n, _ = xyz.shape
    num_patches, patch_size = min(num_patches, n), min(patch_size, n)
    centers = torch.rand(b, n, device=xyz.device).argsort(dim=1)[:, :num_patches]      # distinct, random
    _, idx = knn(gather_points(xyz, centers), xyz, patch_size)                          # (B,C,k)
    offsets = torch.randn(b, num_patches, 3, device=xyz.device, dtype=xyz.dtype) * sigma
    batch = torch.arange(b, device=xyz.device)[:, None, None].expand_as(idx)
    perturbed = torch.zeros(b, n, dtype=torch.bool, device=xyz.device)
    perturbed[batch, idx] = True
    if overlap == "add":
        shift = torch.zeros_like(xyz).index_put_((batch, idx), offsets[:, :, None].expand(-1, -1, patch_size, -1),
                                                 accumulate=True)
    else:  # the highest patch index covering a point owns it
        patch_id = torch.arange(num_patches, device=xyz.device)[None, :, None].expand_as(idx)
        owner = torch.full((b, n), -1, dtype=torch.long, device=xyz.device).scatter_reduce_(
            1, idx.flatten(1), patch_id.flatten(1), "amax")
        shift = torch.gather(offsets, 1, owner.clamp_min(0)[..., None].expand(-1, -1, 3))
        shift = torch.where(perturbed[..., None], shift, torch.zeros_like(shift))
    return xyz + shift, perturbed


def renormalize(clean: torch.Tensor, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official SeRP loader's order: perturb first, then normalize BOTH clouds with the clean
    cloud's statistics: subtract its centroid, divide by its largest point norm (measured, as the
    official code does, before centring). (B,N,3) x2 -> (clean, noisy)."""
    center = clean.mean(dim=1, keepdim=True)
    radius = clean.norm(dim=2).amax(dim=1)[:, None, None].clamp_min(1e-12)
    return (clean - center) / radius, (noisy - center) / radius
