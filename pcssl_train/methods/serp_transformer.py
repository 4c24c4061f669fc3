"""SeRP-Transformer (Garg & Chaudhary, section 3.3): perturb the cloud, patch it (FPS + kNN on the
perturbed cloud), encode ALL patches with a cls token (no masking), decode, reconstruct every
patch's clean points, Chamfer-L2."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..losses import ChamferLoss
from ..models.blocks import TransformerStack
from ..models.point_transformer import PointTransformerEncoder, position_mlp
from ..ops import gather_points
from .base import Method
from .perturb import perturb_patches
from .point_mae import PatchReconstructionHead


class SeRPTransformer(Method):
    name = "serp-transformer"
    kind = "fused"

    def __init__(self, num_group: int = 64, group_size: int = 32, width: int = 384, depth: int = 12,
                 num_heads: int = 6, drop_path: float = 0.1, decoder_depth: int = 4, decoder_heads: int = 6,
                 fusion: str = "concat", patch_norm: str = "std", perturb_patches: int = 20,
                 perturb_points: int = 20, perturb_sigma: float = 0.03):
        super().__init__()
        self.encoder_cfg = dict(num_group=num_group, group_size=group_size, width=width, depth=depth,
                                num_heads=num_heads, drop_path=drop_path, cls_token=True, fusion=fusion,
                                patch_norm=patch_norm)
        self.perturb = dict(num_patches=perturb_patches, patch_size=perturb_points, sigma=perturb_sigma)
        self.encoder = PointTransformerEncoder(**self.encoder_cfg)
        self.decoder_pos_embed = position_mlp(width)
        self.decoder_cls_pos = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder = TransformerStack(width, decoder_depth, decoder_heads, drop_path_rate=drop_path)
        self.head = PatchReconstructionHead(width, group_size)
        self.loss = ChamferLoss(2)
        nn.init.trunc_normal_(self.decoder_cls_pos, std=0.02)

    def bottleneck(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Identity here; VASP quantizes."""
        return z, {}

    def forward(self, batch):
        clean = batch["points"]
        noisy, _ = perturb_patches(clean, **self.perturb)
        patches = self.encoder.group(noisy)
        b, g = patches.center.shape[:2]
        target = gather_points(clean, patches.idx) - patches.center.unsqueeze(2)      # clean points, same patches
        z, terms = self.bottleneck(self.encoder(patches.neighborhood, patches.center))
        pos = torch.cat([self.decoder_cls_pos.expand(b, -1, -1), self.decoder_pos_embed(patches.center)], dim=1)
        pred = self.head(self.decoder(z, pos)[:, 1:])
        rec = self.loss(pred, target.reshape(b * g, -1, 3))
        loss = rec + terms.pop("vq", 0.0)
        return {"loss": loss, "rec": rec.detach(), **{k: v.detach() for k, v in terms.items()}}

    def encoder_export(self):
        return "point_transformer", dict(self.encoder_cfg), self.encoder.state_dict()
