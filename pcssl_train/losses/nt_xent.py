"""NT-Xent (SimCLR; the loss CrossPoint and MM-Point contrast with), in its 2N form.

For paired embeddings a_i, b_i (i = 1..N), each of the 2N vectors is an anchor whose positive is
its partner and whose negatives are the other 2N - 2 vectors of both batches:
``loss = mean over anchors of -log(exp(s(x, x+)/t) / sum_{y != x} exp(s(x, y)/t))`` with cosine
similarity s. Symmetric in (a, b), so it covers both directions (3D->2D and 2D->3D) at once.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class NTXentLoss(nn.Module):
    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N,D), (N,D) -> scalar, computed in float32 whatever the autocast dtype (under bf16 autocast
        the similarity matmul would otherwise run in bf16: ~3e-3 error per cosine, / temperature)."""
        n = a.shape[0]
        with torch.autocast(a.device.type, enabled=False):
            z = F.normalize(torch.cat([a.float(), b.float()]), dim=1)
            logits = z @ z.t() / self.temperature
            logits.fill_diagonal_(float("-inf"))                           # an anchor is not its own negative
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(a.device)
            return F.cross_entropy(logits, target)
