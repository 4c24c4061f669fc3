"""CrossAlignNet (Peng et al., PeerJ Computer Science 2025): one view's cloud and RGB
image, masks aligned across the modalities (Eq. 1-2), a point encoder on the visible point patches
and an image encoder on the visible and the masked image patches as two sequences (Eq. 3-4), then

- GSA, global semantic alignment (Eq. 5-8): a decoder over the visible point tokens + mask tokens,
  max-pooled, a feature prediction head, contrasted (symmetric InfoNCE, in-batch negatives) with
  the image projection head's output on the mean-pooled image tokens;
- LMR, local mask reconstruction (Eq. 9-11): cross-attention blocks (queries: the point tokens with
  mask tokens; keys/values: the visible image tokens), self-attention blocks, a linear head to the
  masked patches' points, Chamfer-L2.

``L = L_LMR + gsa_weight * L_GSA`` (Eq. 12). Only the point encoder is exported. The choices the
paper leaves open are listed in docs/TRAINING.md ("CrossAlignNet").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..losses import ChamferLoss, SymmetricInfoNCELoss
from ..models.blocks import CrossBlock, TransformerStack, drop_path_rates, init_weights
from ..models.heads import PatchReconstructionHead, ProjectionHead
from ..models.image_transformer import ImageTransformerEncoder
from ..models.point_transformer import PointTransformerEncoder, position_mlp
from ..ops.grouping import Patches
from ..ops.projection import project
from .base import Method
from .mask_alignment import STRATEGIES, align_masks, image_patch_index, patch_cells, resize_view
from .point_mae import random_patch_mask
from .registry import register_method

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CrossDecoder(nn.Module):
    """LMR decoder: ``cross_depth`` cross-attention blocks over the image tokens, then
    ``self_depth`` self-attention blocks; the position embedding is re-added before every block."""

    def __init__(self, dim: int, cross_depth: int, self_depth: int, num_heads: int, drop_path: float = 0.0):
        super().__init__()
        rates = drop_path_rates(drop_path, cross_depth + self_depth)
        self.cross = nn.ModuleList(CrossBlock(dim, num_heads, drop_path=p) for p in rates[:cross_depth])
        self.self_attn = TransformerStack(dim, self_depth, num_heads)
        for block, p in zip(self.self_attn.blocks, rates[cross_depth:]):
            block.drop_path.p = p

    def forward(self, x, pos, context, context_mask):
        for block in self.cross:
            x = block(x + pos, context, context_mask)
        return self.self_attn(x, pos)


@dataclass
class AlignedMasks:
    """What the encoders see: the point patches, the point mask and image mask (True = masked)
    after alignment, and which samples had to fall back to unaligned masks (see ``align``)."""

    patches: Patches
    point_mask: torch.Tensor    # (B,G)
    image_mask: torch.Tensor    # (B,P)
    fallback: torch.Tensor      # (B,) bool


@register_method("crossalignnet")
class CrossAlignNet(Method):
    kind = "view"

    def __init__(self, num_group: int, group_size: int, width: int, depth: int, num_heads: int, drop_path: float,
                 image_size: int, patch_size: int, image_depth: int, image_heads: int, mask_ratio: float,
                 image_mask: str, gsa: bool, lmr: bool, gsa_weight: float, gsa_depth: int, lmr_cross_depth: int,
                 lmr_self_depth: int, decoder_heads: int, proj_hidden: int, proj_dim: int, temperature: float):
        super().__init__()
        if image_mask not in STRATEGIES:
            raise ValueError(f"image_mask must be one of {', '.join(STRATEGIES)}, got {image_mask!r}")
        if not (gsa or lmr):
            raise ValueError("gsa and lmr are both off: enable at least one task")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder_cfg = dict(num_group=num_group, group_size=group_size, width=width, depth=depth,
                                num_heads=num_heads, drop_path=drop_path)
        self.mask_ratio, self.image_mask, self.gsa_weight = mask_ratio, image_mask, gsa_weight
        self.use_gsa, self.use_lmr = gsa, lmr
        self.encoder = PointTransformerEncoder(**self.encoder_cfg)
        self.image_encoder = ImageTransformerEncoder(image_size, patch_size, width, image_depth, image_heads, drop_path)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if gsa:
            self.gsa_mask_token = nn.Parameter(torch.zeros(1, 1, width))
            self.gsa_pos_embed = position_mlp(width)
            self.gsa_decoder = TransformerStack(width, gsa_depth, decoder_heads, drop_path_rate=drop_path)
            self.feature_head = ProjectionHead(width, proj_hidden, proj_dim)
            self.image_head = ProjectionHead(width, proj_hidden, proj_dim)
            self.gsa_loss = SymmetricInfoNCELoss(temperature)
        if lmr:
            self.lmr_mask_token = nn.Parameter(torch.zeros(1, 1, width))
            self.lmr_pos_embed = position_mlp(width)
            self.lmr_decoder = CrossDecoder(width, lmr_cross_depth, lmr_self_depth, decoder_heads, drop_path)
            self.lmr_head = PatchReconstructionHead(width, group_size)
            self.lmr_loss = ChamferLoss(2)
        for name, module in self.named_children():
            if name not in ("encoder", "image_encoder"):
                init_weights(module)
        for token in (getattr(self, "gsa_mask_token", None), getattr(self, "lmr_mask_token", None)):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)

    # --- inputs -------------------------------------------------------------------------------
    def view_inputs(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized image at the encoder's size and the intrinsics that go with it."""
        rgb, K = resize_view(batch["rgb"], batch["K"], self.image_encoder.image_size)
        return (rgb - self.image_mean) / self.image_std, K

    def align(self, xyz: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor) -> AlignedMasks:
        """Random point-patch masking, then the aligned image mask (Eq. 1-2).

        If the shared-patch rule would mask every point patch of a sample (possible for tiny
        objects), that sample keeps its random point mask and takes the image mask of the
        strategy without the rule; ``fallback`` marks it (logged as ``align_fallback``)."""
        patches = self.encoder.group(xyz)
        b, g = patches.center.shape[:2]
        size, patch = self.image_encoder.image_size, self.image_encoder.patch_size
        num_image = self.image_encoder.num_patches
        mask = random_patch_mask(b, g, self.mask_ratio, xyz.device)
        cell = image_patch_index(project(patches.center, K, world_to_cam)[0], size, size, patch)
        point_mask, image_mask = align_masks(mask, cell, num_image, self.image_mask)
        fallback = point_mask.all(dim=1)
        if self.image_mask != "random":
            plain = patch_cells(mask if self.image_mask == "correspondence" else ~mask, cell, num_image)
            point_mask = torch.where(fallback[:, None], mask, point_mask)
            image_mask = torch.where(fallback[:, None], plain, image_mask)
            no_context = image_mask.all(dim=1)   # LMR needs at least one visible image token
            image_mask = image_mask & ~no_context[:, None]
            fallback = fallback | no_context
        return AlignedMasks(patches, point_mask, image_mask, fallback)

    # --- forward -------------------------------------------------------------------------------
    def _decoder_tokens(self, tokens, index, valid, mask_token, g):
        """Scatter the visible tokens (B,L,C) to their patch positions among G mask tokens."""
        b = tokens.shape[0]
        full = mask_token.to(tokens.dtype).expand(b, g, -1).clone()
        rows = torch.arange(b, device=tokens.device)[:, None].expand_as(index)
        full[rows[valid], index[valid]] = tokens[valid]
        return full

    def forward(self, batch):
        image, K = self.view_inputs(batch)
        m = self.align(batch["points"], K, batch["world_to_cam"])
        patches, point_mask, image_mask = m.patches, m.point_mask, m.image_mask
        g = point_mask.shape[1]
        tokens, index, valid = self.encoder.forward_visible(patches.neighborhood, patches.center, ~point_mask)
        image_tokens = self.image_encoder(image, groups=image_mask)       # visible and masked: two sequences
        out = {"masked_points": point_mask.float().mean().detach(), "masked_image": image_mask.float().mean().detach(),
               "align_fallback": m.fallback.float().mean()}
        loss = 0.0
        if self.use_lmr:
            x = self._decoder_tokens(tokens, index, valid, self.lmr_mask_token, g)
            x = self.lmr_decoder(x, self.lmr_pos_embed(patches.center), image_tokens, ~image_mask)
            pred = self.lmr_head(x[point_mask][None])
            out["lmr"] = self.lmr_loss(pred, patches.neighborhood[point_mask])
            loss = out["lmr"]
        if self.use_gsa:
            x = self._decoder_tokens(tokens, index, valid, self.gsa_mask_token, g)
            x = self.gsa_decoder(x, self.gsa_pos_embed(patches.center))
            point_feature = self.feature_head(x.max(dim=1).values)
            image_feature = self.image_head(image_tokens.mean(dim=1))
            out["gsa"] = self.gsa_loss(point_feature, image_feature)
            loss = loss + (self.gsa_weight if self.use_lmr else 1.0) * out["gsa"]
        out["loss"] = loss
        return {k: v if k == "loss" else v.detach() for k, v in out.items()}

    def encoder_export(self):
        return "point_transformer", dict(self.encoder_cfg), self.encoder.state_dict()
