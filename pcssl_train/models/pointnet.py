"""PointNet (Qi et al., CVPR 2017) classification network, as in the paper: input T-Net (3x3),
shared MLP (64, 64), feature T-Net (64x64), shared MLP (64, 128, 1024), max pool, then an FC head
512-256-classes. Shared MLPs are Conv1d(k=1) + BatchNorm1d + ReLU on (B, C, N) tensors."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


def shared_mlp(channels: list[int]) -> nn.Sequential:
    """Per-point MLP: Conv1d(k=1) + BatchNorm1d + ReLU for each consecutive pair of ``channels``."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv1d(c_in, c_out, 1), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def fc_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Linear(c_in, c_out), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]


class TNet(nn.Module):
    """Predicts a (B, k, k) transform from (B, k, N) features: shared MLP 64-128-1024, max pool,
    FC 512-256-k*k. The last layer starts at zero, so the transform starts as the identity."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.mlp = shared_mlp([k, 64, 128, 1024])
        self.fc = nn.Sequential(*fc_bn_relu(1024, 512), *fc_bn_relu(512, 256))
        self.out = nn.Linear(256, k * k)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.mlp(x).amax(dim=2))
        eye = torch.eye(self.k, dtype=x.dtype, device=x.device)
        return self.out(x).view(-1, self.k, self.k) + eye


def feature_transform_regularizer(trans: torch.Tensor) -> torch.Tensor:
    """Orthogonality penalty of a (B, k, k) transform: ``mean_b ||I - A_b A_b^T||_F``.

    Computed in float32 (or wider) even under bf16 autocast: for a nearly orthogonal A, I - A A^T
    cancels, and a bf16 product would leave mostly rounding noise (~4e-3 per entry)."""
    with torch.autocast(trans.device.type, enabled=False):
        trans = trans.to(torch.promote_types(trans.dtype, torch.float32))
        eye = torch.eye(trans.shape[-1], dtype=trans.dtype, device=trans.device)
        return torch.linalg.matrix_norm(eye - trans @ trans.transpose(1, 2)).mean()


@register_model("pointnet_encoder")
class PointNetEncoder(nn.Module):
    """PointNet trunk: ``forward(xyz (B, N, 3))`` -> dict with

    * ``local``: (B, 64, N) per-point features after the feature transform,
    * ``global_feat``: (B, 1024) max-pooled global feature,
    * ``feat_transform``: (B, 64, 64) feature transform, or None without the feature T-Net
      (add ``feature_transform_regularizer`` of it to the loss).
    """

    def __init__(self, input_transform: bool = True, feature_transform: bool = True):
        super().__init__()
        self.input_tnet = TNet(3) if input_transform else None
        self.mlp1 = shared_mlp([3, 64, 64])
        self.feature_tnet = TNet(64) if feature_transform else None
        self.mlp2 = shared_mlp([64, 64, 128, 1024])

    def local_features(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, 3) -> ``local`` (B, 64, N) and ``feat_transform`` (or None), as in ``forward``."""
        x = xyz.transpose(1, 2)  # (B, 3, N)
        if self.input_tnet is not None:
            x = torch.bmm(self.input_tnet(x).transpose(1, 2), x)  # row-vector points times A
        x = self.mlp1(x)
        trans = None
        if self.feature_tnet is not None:
            trans = self.feature_tnet(x)
            x = torch.bmm(trans.transpose(1, 2), x)
        return x, trans

    def forward(self, xyz: torch.Tensor) -> dict[str, torch.Tensor | None]:
        x, trans = self.local_features(xyz)
        return {"local": x, "global_feat": self.mlp2(x).amax(dim=2), "feat_transform": trans}

    def forward_tokens(self, xyz: torch.Tensor) -> tuple[None, torch.Tensor]:
        """(B,N,3) -> (None, per-point 1024-d features (B,N,1024)): no global token."""
        return None, self.mlp2(self.local_features(xyz)[0]).transpose(1, 2)

    def forward_features(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B,N,3) -> (B, 2048) evaluation feature: max and mean over the per-point 1024-d features
        (the max is ``global_feat``)."""
        per_point = self.forward_tokens(xyz)[1]
        return torch.cat([per_point.amax(dim=1), per_point.mean(dim=1)], dim=-1)


@register_model("pointnet", classifier_for="pointnet_encoder")
class PointNetClassifier(nn.Module):
    """PointNet classifier: encoder, then FC 512-256 (BN, ReLU, dropout) and a linear layer to logits.

    ``forward(xyz (B, N, 3))`` -> (B, num_classes) logits; with ``return_transform=True`` it returns
    ``(logits, feat_transform)`` so the regularizer can be added to the loss.
    """

    def __init__(self, num_classes: int = 40, input_transform: bool = True, feature_transform: bool = True,
                 dropout: float = 0.3):
        super().__init__()
        self.encoder = PointNetEncoder(input_transform, feature_transform)
        self.head = nn.Sequential(*fc_bn_relu(1024, 512), nn.Dropout(dropout),
                                  *fc_bn_relu(512, 256), nn.Dropout(dropout),
                                  nn.Linear(256, num_classes))

    def forward_features(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B, 1024) global feature."""
        return self.encoder(xyz)["global_feat"]

    def forward(self, xyz: torch.Tensor, return_transform: bool = False):
        out = self.encoder(xyz)
        logits = self.head(out["global_feat"])
        return (logits, out["feat_transform"]) if return_transform else logits
