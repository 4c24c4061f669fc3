"""VQ-VAE bottleneck loss (van den Oord et al. 2017; VASP eq. 13 without the reconstruction term)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class VQLoss(nn.Module):
    """``codebook_weight`` x codebook term ||sg[z_e] - e||^2 + ``beta`` x commitment term ||z_e - sg[e]||^2
    (mean squared errors)."""

    def __init__(self, beta: float = 0.25, codebook_weight: float = 1.0):
        super().__init__()
        self.beta, self.codebook_weight = beta, codebook_weight

    def forward(self, z_e: torch.Tensor, z_q: torch.Tensor) -> dict[str, torch.Tensor]:
        codebook = F.mse_loss(z_q.float(), z_e.detach().float())
        commitment = F.mse_loss(z_e.float(), z_q.detach().float())
        vq = self.codebook_weight * codebook + self.beta * commitment
        return {"codebook": codebook, "commitment": commitment, "vq": vq}
