"""Point-MAE (Pang et al. 2022): mask 60 % of the patches at random, encode the visible ones,
decode with mask tokens, predict the masked patches' points, Chamfer-L2.

Identical to the official model (github.com/Pang-Yatian/Point-MAE, ``models/Point_MAE.py``): same
parameters (``pcssl_train.official`` maps the keys), the tokenizer sees all patches before masking,
the decoder's linear layers start xavier-uniform; tested against the official outputs."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..losses import ChamferLoss
from ..models.blocks import TransformerStack
from ..models.heads import PatchReconstructionHead
from ..models.point_transformer import PointTransformerEncoder, position_mlp
from .base import Method
from .registry import register_method


def random_patch_mask(batch: int, groups: int, ratio: float, device) -> torch.Tensor:
    """(B,G) bool, True = masked; exactly int(ratio * G) masked patches per sample."""
    num_mask = int(ratio * groups)
    order = torch.rand(batch, groups, device=device).argsort(dim=1)
    mask = torch.zeros(batch, groups, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :num_mask], True)
    return mask


def xavier_linear_init(module: nn.Module) -> None:
    """The official Point-MAE decoder's init: xavier-uniform linear weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_method("point-mae")
class PointMAE(Method):
    kind = "fused"

    def __init__(self, num_group: int, group_size: int, width: int, depth: int, num_heads: int, drop_path: float,
                 decoder_depth: int, decoder_heads: int, mask_ratio: float):
        super().__init__()
        self.encoder_cfg = dict(num_group=num_group, group_size=group_size, width=width, depth=depth,
                                num_heads=num_heads, drop_path=drop_path)
        self.mask_ratio = mask_ratio
        self.encoder = PointTransformerEncoder(**self.encoder_cfg)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_pos_embed = position_mlp(width)
        self.decoder = TransformerStack(width, decoder_depth, decoder_heads, drop_path_rate=drop_path)
        self.head = PatchReconstructionHead(width, group_size)
        self.loss = ChamferLoss(2)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        xavier_linear_init(self.decoder)

    def forward(self, batch):
        patches = self.encoder.group(batch["points"])
        b, g = patches.center.shape[:2]
        return {"loss": self.masked_loss(patches, random_patch_mask(b, g, self.mask_ratio, patches.center.device))}

    def masked_loss(self, patches, mask: torch.Tensor) -> torch.Tensor:
        """Chamfer-L2 of the reconstructed masked patches; ``mask`` (B,G) bool, True = masked, the
        same count per sample. Visible and masked tokens are taken in increasing patch order."""
        b = mask.shape[0]
        visible = self.encoder(patches.neighborhood, patches.center, visible=~mask)
        m = int(mask[0].sum())
        pos = self.decoder_pos_embed(torch.cat([patches.center[~mask].reshape(b, -1, 3),
                                                patches.center[mask].reshape(b, -1, 3)], dim=1))
        tokens = torch.cat([visible, self.mask_token.expand(b, m, -1).to(visible.dtype)], dim=1)
        pred = self.head(self.decoder(tokens, pos, return_last=m))
        target = patches.neighborhood[mask].reshape(b * m, -1, 3)
        return self.loss(pred, target)

    def encoder_export(self):
        return "point_transformer", dict(self.encoder_cfg), self.encoder.state_dict()
