"""SeRP-Transformer (Garg & Chaudhary, section 3.3): perturb the cloud, patch it (FPS + kNN on the
perturbed cloud), encode ALL patches with a cls token (no masking), decode, reconstruct every
patch's clean points, Chamfer-L2.

Where the paper is silent the defaults follow the official code (github.com/muditchaudhary/SERP-Net):
``chamfer_over="cloud"``: one Chamfer per cloud between all G x K predicted and all G x K target
points ("patch": one Chamfer per patch); ``rec_center="clean"``: the target patches are centred at
the clean position of their center point ("perturbed": at the perturbed center the encoder sees);
``perturb_overlap`` and ``normalize_after_perturb`` as in ``perturb.py``."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..losses import ChamferLoss
from ..models.blocks import TransformerStack
from ..models.heads import PatchReconstructionHead
from ..models.point_transformer import PointTransformerEncoder, position_mlp
from ..ops import gather_points
from .base import Method
from .perturb import perturb_patches, renormalize
from .registry import register_method


@register_method("serp-transformer")
class SeRPTransformer(Method):
    kind = "fused"

    def __init__(self, num_group: int, group_size: int, width: int, depth: int, num_heads: int, drop_path: float,
                 decoder_depth: int, decoder_heads: int, fusion: str, patch_norm: str, perturb_patches: int,
                 perturb_points: int, perturb_sigma: float, perturb_overlap: str, normalize_after_perturb: bool,
                 chamfer_over: str, rec_center: str):
        super().__init__()
        if chamfer_over not in ("cloud", "patch"):
            raise ValueError(f"chamfer_over must be 'cloud' or 'patch', got {chamfer_over!r}")
        if rec_center not in ("clean", "perturbed"):
            raise ValueError(f"rec_center must be 'clean' or 'perturbed', got {rec_center!r}")
        self.encoder_cfg = dict(num_group=num_group, group_size=group_size, width=width, depth=depth,
                                num_heads=num_heads, drop_path=drop_path, cls_token=True, fusion=fusion,
                                patch_norm=patch_norm)
        self.perturb = dict(num_patches=perturb_patches, patch_size=perturb_points, sigma=perturb_sigma,
                            overlap=perturb_overlap)
        self.normalize_after_perturb, self.chamfer_over, self.rec_center = (normalize_after_perturb,
                                                                           chamfer_over, rec_center)
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

    def reconstruction_target(self, clean: torch.Tensor, patches) -> torch.Tensor:
        """(B,G,K,3): the clean points of each patch relative to its (clean or perturbed) center."""
        if self.rec_center == "clean":  # a patch's first neighbour is its center point itself
            center = gather_points(clean, patches.idx[:, :, 0])
        else:
            center = patches.center
        return gather_points(clean, patches.idx) - center.unsqueeze(2)

    def forward(self, batch):
        clean = batch["points"]
        noisy, _ = perturb_patches(clean, **self.perturb)
        if self.normalize_after_perturb:
            clean, noisy = renormalize(clean, noisy)
        patches = self.encoder.group(noisy)
        b, g = patches.center.shape[:2]
        target = self.reconstruction_target(clean, patches)
        z, terms = self.bottleneck(self.encoder(patches.neighborhood, patches.center))
        pos = torch.cat([self.decoder_cls_pos.expand(b, -1, -1), self.decoder_pos_embed(patches.center)], dim=1)
        pred = self.head(self.decoder(z, pos)[:, 1:])                                   # (B*G, K, 3)
        clouds = b if self.chamfer_over == "cloud" else b * g
        rec = self.loss(pred.reshape(clouds, -1, 3), target.reshape(clouds, -1, 3))
        loss = rec + terms.pop("vq", 0.0)
        return {"loss": loss, "rec": rec.detach(), **{k: v.detach() for k, v in terms.items()}}

    def encoder_export(self):
        return "point_transformer", dict(self.encoder_cfg), self.encoder.state_dict()
