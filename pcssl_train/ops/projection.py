"""Pinhole projection in torch: ``cma_builder.geometry.cameras.project``'s conventions (docs/CONVENTIONS.md:
OpenCV camera, pixel (v, u) with integer pixel centers), batched one camera per cloud."""

from __future__ import annotations

import torch
from torch import Tensor


def project(points: Tensor, K: Tensor, world_to_cam: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N, 3) world points, K (B, 3, 3), world_to_cam (B, 4, 4) -> (pixels (B, N, 2) as (v, u), camera z (B, N)).

    Computed in float32 (or wider) even under bf16 autocast: a bf16 matmul would move pixels by
    ~1e-3 of their distance from the image center, enough to change the image patch of a point.
    Pixels divide by z clamped to 1e-9, so points at or behind the camera get finite pixels."""
    dtype = torch.promote_types(torch.promote_types(points.dtype, world_to_cam.dtype), torch.float32)
    with torch.autocast(points.device.type, enabled=False):
        points, K, world_to_cam = points.to(dtype), K.to(dtype), world_to_cam.to(dtype)
        cam = points @ world_to_cam[:, :3, :3].transpose(1, 2) + world_to_cam[:, None, :3, 3]
        z = cam[..., 2]
        depth = z.clamp_min(1e-9)
        u = K[:, None, 0, 0] * cam[..., 0] / depth + K[:, None, 0, 2]
        v = K[:, None, 1, 1] * cam[..., 1] / depth + K[:, None, 1, 2]
        return torch.stack([v, u], dim=-1), z
