"""DGCNN (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", TOG 2019) classification
network: four EdgeConv layers (64, 64, 128, 256) on kNN graphs rebuilt from each layer's features,
concatenated -> Conv1d to ``emb_dims`` -> global max + avg pooling -> FC 512-256-classes."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..ops import gather_points, knn_graph
from .registry import register_model


def edge_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, N) point features -> (B, 2C, N, k) edge features ``[x_j - x_i, x_i]`` over the k nearest
    neighbours j of each point i in feature space (the point itself included, as in the original)."""
    pts = x.transpose(1, 2)  # (B, N, C)
    idx = knn_graph(pts, k)  # (B, N, k), rebuilt every forward, not differentiated (matmul form, as DGCNN)
    neighbors = gather_points(pts, idx)  # (B, N, k, C)
    center = pts[:, :, None, :].expand_as(neighbors)
    return torch.cat([neighbors - center, center], dim=3).permute(0, 3, 1, 2).contiguous()


class EdgeConv(nn.Module):
    """EdgeConv: edge features -> Conv2d(k=1) + BN + LeakyReLU(0.2) -> max over the k neighbours.

    The 1x1 convolution of ``[x_j - x_i, x_i]`` with weight ``[W1 | W2]`` equals
    ``W1 x_j + (W2 - W1) x_i``, so the forward transforms the N points first and gathers the
    C_out-channel results: k times fewer multiplications and no (B, 2C, N, k) tensor. The result is
    the original's up to float rounding (tested against ``forward_reference``, the literal form)."""

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        self.k = k
        self.mlp = nn.Sequential(nn.Conv2d(2 * c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, act = self.mlp
        pts = x.transpose(1, 2)                                              # (B, N, C)
        c = pts.shape[-1]
        w = conv.weight[:, :, 0, 0]                                          # (C_out, 2C)
        w_neighbor, w_center = w[:, :c], w[:, c:] - w[:, :c]
        neighbor = pts @ w_neighbor.t()                                      # (B, N, C_out)
        center = pts @ w_center.t()
        y = gather_points(neighbor, knn_graph(pts, self.k)) + center[:, :, None]   # (B, N, k, C_out)
        return act(bn(y.permute(0, 3, 1, 2))).amax(dim=-1)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The literal EdgeConv: build the (B, 2C, N, k) edge features, then the 1x1 convolution."""
        return self.mlp(edge_features(x, self.k)).amax(dim=-1)


@register_model("dgcnn_encoder")
class DGCNNEncoder(nn.Module):
    """``forward(xyz (B, N, 3))`` -> (B, 2 * emb_dims): [global max pool, global avg pool] of the
    per-point embedding. Needs ``N >= k``."""

    def __init__(self, k: int = 20, emb_dims: int = 1024):
        super().__init__()
        self.k = k
        self.emb_dims = emb_dims
        self.edge_convs = nn.ModuleList([EdgeConv(3, 64, k), EdgeConv(64, 64, k), EdgeConv(64, 128, k),
                                         EdgeConv(128, 256, k)])
        self.embed = nn.Sequential(nn.Conv1d(512, emb_dims, 1, bias=False), nn.BatchNorm1d(emb_dims),
                                   nn.LeakyReLU(0.2))

    def per_point(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, emb_dims, N): the embedding before pooling."""
        x = xyz.transpose(1, 2)  # (B, 3, N)
        features = []
        for conv in self.edge_convs:
            x = conv(x)
            features.append(x)
        return self.embed(torch.cat(features, dim=1))

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        x = self.per_point(xyz)
        return torch.cat([x.amax(dim=2), x.mean(dim=2)], dim=1)

    def forward_tokens(self, xyz: torch.Tensor) -> tuple[None, torch.Tensor]:
        """(B,N,3) -> (None, per-point embedding (B,N,emb_dims)): no global token."""
        return None, self.per_point(xyz).transpose(1, 2)

    def forward_features(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B,N,3) -> (B, 2 x emb_dims) evaluation feature: the encoder's own max + mean embedding."""
        return self(xyz)


@register_model("dgcnn", classifier_for="dgcnn_encoder")
class DGCNNClassifier(nn.Module):
    """DGCNN classifier: encoder, then Linear(2*emb_dims, 512, no bias)-BN-LeakyReLU-dropout,
    Linear(512, 256)-BN-LeakyReLU-dropout, Linear(256, num_classes). ``forward(xyz (B, N, 3))`` -> logits."""

    def __init__(self, num_classes: int = 40, k: int = 20, emb_dims: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.encoder = DGCNNEncoder(k, emb_dims)
        self.head = nn.Sequential(
            nn.Linear(2 * emb_dims, 512, bias=False), nn.BatchNorm1d(512), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Linear(512, 256), nn.BatchNorm1d(256), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Linear(256, num_classes))

    def forward_features(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B, 2 * emb_dims) global feature."""
        return self.encoder(xyz)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(xyz))
