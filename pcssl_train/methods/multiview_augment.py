"""Batched, on-device augmentations for MM-Point, in torch only.

Every random number comes from the torch global RNG (``torch.rand``/``torch.randn`` on the tensor's
device), never numpy or Python's ``random``: the trainer checkpoints the torch RNG state and exact
resume depends on it. All functions are pure: they return new tensors and leave their inputs alone.

- :func:`augment_clouds`: CrossPoint-style point cloud augmentation (anisotropic scale, rotation
  about +y, translation, clipped Gaussian jitter), one random draw per sample.
- :func:`augment_images`: image augmentation whose strength ``s`` in [0, 1] scales every part
  (random resized crop, horizontal flip, color jitter, random grayscale); ``s = 0`` is the identity.
- :func:`strength_levels`: the per-view strengths of MM-Point's multi-level augmentation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def rotation_y(angle: torch.Tensor) -> torch.Tensor:
    """(B,) angles in radians -> (B, 3, 3) rotations about +y (ShapeNet's up axis)."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).reshape(-1, 3, 3)


def augment_clouds(points: torch.Tensor, rotate_deg: float = 180.0, scale_low: float = 2.0 / 3.0,
                   scale_high: float = 1.5, translate: float = 0.2, jitter_sigma: float = 0.01,
                   jitter_clip: float = 0.05) -> torch.Tensor:
    """A randomly transformed copy of each cloud of ``points`` (B, N, 3):
    ``x' = R_y(a) diag(s) x + t + e`` with, per sample, ``a ~ U(-rotate_deg, rotate_deg)`` degrees
    (180 = the full circle, CrossPoint's PointcloudRotate), ``s ~ U(scale_low, scale_high)`` per
    axis, ``t ~ U(-translate, translate)`` per axis, and per point ``e = clip(N(0, jitter_sigma^2),
    -jitter_clip, jitter_clip)`` per coordinate. The same number of random values is drawn whatever
    the settings (the RNG stream does not depend on them)."""
    b, n, _ = points.shape
    dev, dt = points.device, points.dtype
    u = torch.rand(b, 7, device=dev).to(dt)                    # drawn in float32, computed in the input's dtype
    noise = torch.randn(b, n, 3, device=dev).to(dt)
    angle = (u[:, 0] * 2 - 1) * math.radians(rotate_deg)
    scale = scale_low + (scale_high - scale_low) * u[:, None, 1:4]
    shift = (u[:, None, 4:7] * 2 - 1) * translate
    noise = (noise * jitter_sigma).clamp(-jitter_clip, jitter_clip)
    return (points * scale) @ rotation_y(angle).transpose(1, 2) + shift + noise


def strength_levels(views: int, strength_min: float = 0.2, strength_max: float = 1.0) -> list[float]:
    """Strength of view j = 0..views-1: ``linspace(strength_min, strength_max, views)[j]``, from the
    weakest (view 1) to the strongest (view m). A single view gets ``strength_max``."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if views == 1:
        return [float(strength_max)]
    return [float(v) for v in torch.linspace(strength_min, strength_max, views, dtype=torch.float64)]


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) luma."""
    w = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def augment_images(images: torch.Tensor, strength: float | torch.Tensor, crop_area: float = 0.8,
                   aspect: float = 4.0 / 3.0, flip: float = 0.5, color: float = 0.4,
                   grayscale: float = 0.2) -> torch.Tensor:
    """Augment float images (B, 3, H, W) in [0, 1] with strength ``s`` (a float, or (B,) per image):

    1. random resized crop back to H x W: area fraction ``U(1 - crop_area * s, 1)``, aspect ratio
       log-uniform in ``[aspect^-s, aspect^s]``, position uniform inside the image;
    2. horizontal flip with probability ``flip * s``; (1 and 2 are one ``affine_grid`` +
       bilinear ``grid_sample``);
    3. brightness, contrast, saturation (in that order, clamped to [0, 1] after each), factors
       ``U(1 - color * s, 1 + color * s)`` each;
    4. grayscale with probability ``grayscale * s``.

    With ``s = 1`` and the defaults this is SimCLR-like (crop area 0.2-1, ColorJitter 0.4, grayscale
    0.2) with CrossPoint's flip 0.5. ``s = 0`` returns the input (up to float rounding). The same
    number of random values is drawn whatever ``s`` is."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    dev, x = images.device, images.float()
    s = torch.as_tensor(strength, dtype=torch.float32, device=dev).expand(b)
    u = torch.rand(b, 9, device=dev)
    # 1-2: crop + flip as an affine map from output to input coordinates (normalized to [-1, 1])
    area = 1 - crop_area * s * u[:, 0]
    log_ratio = (2 * u[:, 1] - 1) * s * math.log(aspect)
    cw = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    ch = torch.sqrt(area * torch.exp(-log_ratio)).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - cw)
    cy = (2 * u[:, 3] - 1) * (1 - ch)
    sign = torch.where(u[:, 4] < flip * s, -1.0, 1.0)
    zero = torch.zeros_like(cw)
    theta = torch.stack([cw * sign, zero, cx, zero, ch, cy], dim=1).view(b, 2, 3)
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # 3: color jitter
    factor = 1 + (2 * u[:, 5:8] - 1) * (color * s)[:, None]               # (B, 3)
    x = (x * factor[:, 0].view(b, 1, 1, 1)).clamp(0, 1)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * factor[:, 1].view(b, 1, 1, 1) + mean).clamp(0, 1)
    gray = _gray(x)
    x = ((x - gray) * factor[:, 2].view(b, 1, 1, 1) + gray).clamp(0, 1)
    # 4: random grayscale
    to_gray = (u[:, 8] < grayscale * s).view(b, 1, 1, 1)
    x = torch.where(to_gray, _gray(x).expand_as(x), x)
    return x.to(images.dtype)
