"""Vector quantizer with straight-through gradients (VQ-VAE; VASP section 3.4)."""

from __future__ import annotations

import torch
import torch.nn as nn


class VectorQuantizer(nn.Module):
    """Nearest codebook vector for every token: (..., dim) -> z_q (same shape), codes (...)."""

    def __init__(self, num_codes: int = 512, dim: int = 384):
        super().__init__()
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean) for each vector of z_e."""
        flat = z_e.reshape(-1, z_e.shape[-1]).float()
        codes = self.codebook.weight.float()
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)[None]
        return d.argmin(dim=1).reshape(z_e.shape[:-1])

    def forward(self, z_e: torch.Tensor):
        """Returns (z_q with straight-through gradients to z_e, z_q for the codebook loss, codes)."""
        codes = self.lookup(z_e)
        z_q = self.codebook(codes).to(z_e.dtype)
        return z_e + (z_q - z_e).detach(), z_q, codes
