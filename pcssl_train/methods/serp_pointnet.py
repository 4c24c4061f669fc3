"""SeRP-PointNet (Garg & Chaudhary, section 3.2): PointNet on the perturbed cloud; per-point features
from [local ; global] through 4 layers (-> 128); heads classify perturbed points and reconstruct them.

With the feature T-Net on, PointNet's orthogonality regularizer is added (``feature_reg`` x
``||I - A A^T||_F``, 0.001 as PointNet trains): without it the 64x64 transform drifts far from
orthogonal while the pretext gives little signal.

Where the paper is silent the defaults follow the official code (github.com/muditchaudhary/SERP-Net):
``cls_weights`` [0.25, 0.75] weights the cross-entropy (unperturbed, perturbed), null = unweighted;
``perturb_overlap`` and ``normalize_after_perturb`` as in ``perturb.py``."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..losses import PerturbationLoss
from ..models.pointnet import PointNetEncoder, feature_transform_regularizer
from .base import Method
from .perturb import perturb_patches, renormalize
from .registry import register_method


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, 1), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]


@register_method("serp-pointnet")
class SeRPPointNet(Method):
    kind = "fused"

    def __init__(self, rec: str, alpha_cls: float, alpha_rec: float, input_transform: bool, feature_transform: bool,
                 perturb_patches: int, perturb_points: int, perturb_sigma: float, feature_reg: float,
                 cls_weights: tuple[float, float] | None, perturb_overlap: str, normalize_after_perturb: bool):
        super().__init__()
        self.encoder_cfg = dict(input_transform=input_transform, feature_transform=feature_transform)
        self.perturb = dict(num_patches=perturb_patches, patch_size=perturb_points, sigma=perturb_sigma,
                            overlap=perturb_overlap)
        self.normalize_after_perturb = normalize_after_perturb
        self.encoder = PointNetEncoder(**self.encoder_cfg)
        self.point_features = nn.Sequential(*conv_bn_relu(64 + 1024, 512), *conv_bn_relu(512, 256),
                                            *conv_bn_relu(256, 128), *conv_bn_relu(128, 128))
        self.cls_head = nn.Conv1d(128, 2, 1)
        self.rec_head = nn.Conv1d(128, 3, 1)
        self.loss = PerturbationLoss(rec, alpha_cls, alpha_rec, cls_weights)
        self.feature_reg = feature_reg

    def forward(self, batch):
        clean = batch["points"]
        noisy, perturbed = perturb_patches(clean, **self.perturb)
        if self.normalize_after_perturb:
            clean, noisy = renormalize(clean, noisy)
        out = self.encoder(noisy)
        local, glob = out["local"], out["global_feat"]
        feats = self.point_features(torch.cat([local, glob.unsqueeze(2).expand(-1, -1, local.shape[2])], dim=1))
        terms = self.loss(self.cls_head(feats), self.rec_head(feats).transpose(1, 2), perturbed, noisy, clean)
        if self.feature_reg and out["feat_transform"] is not None:
            terms["feat_reg"] = feature_transform_regularizer(out["feat_transform"].float())
            terms["loss"] = terms["loss"] + self.feature_reg * terms["feat_reg"]
        return {k: (v if k == "loss" else v.detach()) for k, v in terms.items()}

    def encoder_export(self):
        return "pointnet_encoder", dict(self.encoder_cfg), self.encoder.state_dict()
