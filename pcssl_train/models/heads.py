"""Heads shared by the methods and the classifiers (as lightly's ``heads.py``). Parameter names are
part of the checkpoint format: a head's layers keep the indices and attribute names they had."""

from __future__ import annotations

import torch
import torch.nn as nn


class ProjectionHead(nn.Sequential):
    """Linear(in, hidden) - BatchNorm1d - ReLU - Linear(hidden, out): CrossPoint's ``inv_head``
    (MM-Point's heads) and the G and H heads of CrossAlignNet."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


class PatchReconstructionHead(nn.Module):
    """Per token: Conv1d(width -> 3 x group_size) (Point-MAE ``increase_dim``), reshaped to points."""

    def __init__(self, width: int, group_size: int):
        super().__init__()
        self.group_size = group_size
        self.proj = nn.Conv1d(width, 3 * group_size, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, _ = tokens.shape
        return self.proj(tokens.transpose(1, 2)).transpose(1, 2).reshape(b * t, self.group_size, 3)


class ClassificationHead(nn.Module):
    """Point-MAE's fine-tuning head: 2 x (Linear, BN, ReLU, Dropout) then Linear."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden),
                                 nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)
