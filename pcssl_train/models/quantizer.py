"""Vector quantizer with straight-through gradients (VQ-VAE; VASP section 3.4)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn


class VectorQuantizer(nn.Module):
    """Nearest codebook vector for every token: (..., dim) -> z_q (same shape), codes (...).

    ``restart_after`` > 0 (not in the VASP paper; off by default): a code that no token of the
    batch (of any DDP process) chose for that many training steps in a row is moved onto a
    random encoder output of the current batch, the usual cure for codebook collapse
    (Dhariwal et al. 2020, "Jukebox"). Under DDP the usage is summed and the new vectors are
    broadcast from rank 0, so every process keeps the same codebook.

    ``init``: the codebook's initial values, ``"uniform_inv_k"`` U(-1/K, 1/K) for K codes (the
    VQ-VAE reference implementations) or ``"uniform01"`` U[0, 1) (the official VASP code).
    """

    INITS = ("uniform_inv_k", "uniform01")

    def __init__(self, num_codes: int = 512, dim: int = 384, restart_after: int = 0, init: str = "uniform_inv_k"):
        super().__init__()
        if init not in self.INITS:
            raise ValueError(f"codebook init must be one of {self.INITS}, got {init!r}")
        self.codebook = nn.Embedding(num_codes, dim)
        low, high = (0.0, 1.0) if init == "uniform01" else (-1.0 / num_codes, 1.0 / num_codes)
        nn.init.uniform_(self.codebook.weight, low, high)
        self.restart_after = int(restart_after)
        self.register_buffer("idle_steps", torch.zeros(num_codes, dtype=torch.long), persistent=False)

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean) for each vector of z_e, in float32 even under
        autocast (a bf16 distance matmul picks another code for ~1 % of vectors)."""
        with torch.autocast(z_e.device.type, enabled=False):
            flat = z_e.reshape(-1, z_e.shape[-1]).float()
            codes = self.codebook.weight.float()
            d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)[None]
        return d.argmin(dim=1).reshape(z_e.shape[:-1])

    def forward(self, z_e: torch.Tensor):
        """Returns (z_q with straight-through gradients to z_e, z_q for the codebook loss, codes)."""
        codes = self.lookup(z_e)
        z_q = self.codebook(codes).to(z_e.dtype)
        if self.training and self.restart_after > 0:
            self.restart_idle(z_e, codes)
        return z_e + (z_q - z_e).detach(), z_q, codes

    @torch.no_grad()
    def restart_idle(self, z_e: torch.Tensor, codes: torch.Tensor) -> int:
        """Count idle steps per code and move codes idle for ``restart_after`` steps onto random
        vectors of ``z_e``. Returns how many codes were moved (this step's z_q is unaffected)."""
        used = torch.bincount(codes.flatten(), minlength=self.idle_steps.numel())
        synced = dist.is_available() and dist.is_initialized()
        if synced:
            dist.all_reduce(used)
        self.idle_steps.copy_(torch.where(used > 0, torch.zeros_like(self.idle_steps), self.idle_steps + 1))
        dead = (self.idle_steps >= self.restart_after).nonzero().flatten()
        if not len(dead):
            return 0
        flat = z_e.detach().reshape(-1, z_e.shape[-1])
        new = flat[torch.randint(len(flat), (len(dead),), device=flat.device)].to(self.codebook.weight.dtype)
        if synced:
            dist.broadcast(new, 0)
        self.codebook.weight.data[dead] = new
        self.idle_steps[dead] = 0
        return len(dead)
