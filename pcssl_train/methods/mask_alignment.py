"""CrossAlignNet's mask alignment (Eq. 1-2): project each point patch center into the view with
K / world_to_cam (``pcssl_train.ops.project``, Eq. 1), find the S x S image patch holding it, and
derive the image mask from the point mask. Pure tensor functions, batched; the CrossAlignNet model
builds on them.

Conventions (docs/CONVENTIONS.md): OpenCV camera, pixel (v, u) with integer pixel centers, so
pixel row r covers v in [r - 0.5, r + 0.5) and image patch row = r // S. Image patches are indexed
row-major: index = (r // S) * (W // S) + (c // S).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STRATEGIES = ("random", "correspondence", "complementary")


def image_patch_index(pixels: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """(B,G,2) pixel coordinates (v, u) -> (B,G) index of the patch x patch image patch (Eq. 2).
    Coordinates outside the image are clamped to the border pixel."""
    if height % patch or width % patch:
        raise ValueError(f"image {height}x{width} is not divisible into {patch}x{patch} patches")
    row = torch.floor(pixels[..., 0] + 0.5).clamp(0, height - 1).long() // patch
    col = torch.floor(pixels[..., 1] + 0.5).clamp(0, width - 1).long() // patch
    return row * (width // patch) + col


def patch_cells(point_mask: torch.Tensor, patch_index: torch.Tensor, num_image_patches: int) -> torch.Tensor:
    """(B,P) bool: the image patches that at least one selected point patch (B,G) projects into."""
    hit = torch.zeros(point_mask.shape[0], num_image_patches, dtype=torch.int32, device=point_mask.device)
    return hit.scatter_add_(1, patch_index, point_mask.int()) > 0


def resize_view(rgb: torch.Tensor, K: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize (B,3,H,W) images to size x size (bilinear, antialiased) and scale the intrinsics to match.

    With integer pixel centers, pixel edge -0.5 maps to -0.5 and H - 0.5 to size - 0.5, so
    ``x' = (x + 0.5) * s - 0.5`` for s = size / H (per axis): ``f' = s f``, ``c' = (c + 0.5) s - 0.5``."""
    h, w = rgb.shape[-2:]
    if (h, w) == (size, size):
        return rgb, K
    out = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    scale = torch.tensor([size / w, size / h, 1.0], dtype=K.dtype, device=K.device)
    K = K * scale[:, None]
    K[:, 0, 2] += 0.5 * scale[0] - 0.5
    K[:, 1, 2] += 0.5 * scale[1] - 0.5
    return out, K


def align_masks(point_mask: torch.Tensor, patch_index: torch.Tensor, num_image_patches: int, strategy: str,
                image_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Point mask (B,G) bool (True = masked) and each point patch's image patch (B,G) ->
    (point_mask, image_mask (B,P) bool).

    ``correspondence``: an image patch is masked iff a masked point patch projects into it.
    ``complementary``: an image patch is masked iff a visible point patch projects into it.
    For both, an image patch shared by masked and visible point patches masks all of them (the
    paper's rule), so afterwards every masked point patch lands in a masked (correspondence) or
    visible (complementary) image patch and every visible one in the opposite. Image patches no
    point patch projects into stay visible. ``random``: the point mask is kept and
    ``int(image_ratio * P)`` image patches (default: the point masking ratio) are masked at random.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"image mask strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    b, g = point_mask.shape
    if strategy == "random":
        ratio = point_mask.float().mean().item() if image_ratio is None else image_ratio
        order = torch.rand(b, num_image_patches, device=point_mask.device).argsort(dim=1)
        image_mask = torch.zeros(b, num_image_patches, dtype=torch.bool, device=point_mask.device)
        image_mask.scatter_(1, order[:, :int(ratio * num_image_patches)], True)
        return point_mask, image_mask

    def cells(mask: torch.Tensor) -> torch.Tensor:
        return patch_cells(mask, patch_index, num_image_patches)

    shared = cells(point_mask) & cells(~point_mask)
    point_mask = point_mask | torch.gather(shared, 1, patch_index)
    image_mask = cells(point_mask) if strategy == "correspondence" else cells(~point_mask)
    return point_mask, image_mask
