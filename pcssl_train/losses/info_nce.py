"""Symmetric InfoNCE between two modalities (CLIP-style; CrossAlignNet's GSA, Eq. 7-8).

``logits = s(a_i, b_j) / t`` with cosine similarity s; row i's positive is column i (the same
object and view), every other column of the batch is a negative; the loss averages
cross-entropy over rows (a -> b) and over columns (b -> a).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class SymmetricInfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N,D), (N,D) -> scalar, computed in float32 whatever the autocast dtype (under bf16 autocast
        the similarity matmul would otherwise run in bf16: ~3e-3 error per cosine, / temperature)."""
        with torch.autocast(a.device.type, enabled=False):
            logits = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).t() / self.temperature
            target = torch.arange(a.shape[0], device=a.device)
            return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
