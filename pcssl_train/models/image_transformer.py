"""Image transformer from scratch (ViT, Dosovitskiy et al. 2021), in the same family as the point
encoder: S x S patches -> Conv2d embedding, learned position embedding re-added before every
block (as the point encoder does), pre-norm blocks, final LayerNorm. 384 x 12 x 6 heads with 16 px
patches is ViT-S/16 (21.7M parameters at 224 px).

``groups`` restricts attention to tokens of the same group: CrossAlignNet encodes its visible and
its masked image tokens as two separate sequences (Eq. 3-4) in one batched pass this way.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import TransformerStack, init_weights
from .registry import register_model


@register_model("image_transformer")
class ImageTransformerEncoder(nn.Module):
    """``forward(images (B,3,H,W), groups=None)`` -> (B, P, width) normalized tokens, P = (H/S)*(W/S)
    in row-major patch order (the order of ``mask_alignment.image_patch_index``)."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, width: int = 384, depth: int = 12,
                 num_heads: int = 6, drop_path: float = 0.1):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        self.image_size, self.patch_size, self.width = image_size, patch_size, width
        self.grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(3, width, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, width))
        self.transformer = TransformerStack(width, depth, num_heads, drop_path_rate=drop_path)
        init_weights(self)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def forward(self, images: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        """``groups`` (B,P) bool or int: a token attends only to tokens of its own group."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got "
                             f"{images.shape[-2]}x{images.shape[-1]}")
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)        # (B,P,C), row-major
        mask = None if groups is None else groups[:, :, None] == groups[:, None, :]
        return self.transformer(tokens, self.pos_embed.to(tokens.dtype), mask=mask)
