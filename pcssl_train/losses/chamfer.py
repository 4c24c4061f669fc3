"""Chamfer distance loss (L1 or L2, Point-MAE's definitions; see ``ops.chamfer``)."""

import torch
import torch.nn as nn

from ..ops import chamfer_distance


class ChamferLoss(nn.Module):
    def __init__(self, norm: int = 2):
        super().__init__()
        self.norm = norm

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,N,3), (B,M,3) -> scalar; computed in float32 whatever the autocast dtype."""
        return chamfer_distance(pred.float(), target.float(), norm=self.norm)
