"""VASP (Garg & Chaudhary, section 3.4): SeRP-Transformer with a vector-quantized bottleneck between
encoder and decoder (codebook 512 x 384, straight-through gradients, codebook + 0.25 x commitment).
``restart_after`` > 0 adds dead-code restarts (not in the paper; see models/quantizer.py).

Where the paper is silent the defaults follow the official code (github.com/muditchaudhary/SERP-Net):
``codebook_weight`` 0.25 on the codebook term (1.0 = VQ-VAE as the paper writes it) and
``codebook_init="uniform01"`` U[0, 1) ("uniform_inv_k": U(-1/K, 1/K))."""

from __future__ import annotations

import torch

from ..losses import VQLoss
from ..models.quantizer import VectorQuantizer
from .registry import register_method
from .serp_transformer import SeRPTransformer


@register_method("vasp")
class VASP(SeRPTransformer):
    def __init__(self, num_codes: int, commitment: float, restart_after: int, codebook_weight: float,
                 codebook_init: str, **serp):
        super().__init__(**serp)
        self.quantizer = VectorQuantizer(num_codes, self.encoder_cfg["width"], restart_after, codebook_init)
        self.vq_loss = VQLoss(commitment, codebook_weight)

    def bottleneck(self, z):
        z_st, z_q, codes = self.quantizer(z)
        terms = self.vq_loss(z, z_q)
        used = torch.bincount(codes.flatten(), minlength=self.quantizer.codebook.num_embeddings).float()
        p = used / used.sum()
        terms["perplexity"] = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
        terms["codes_used"] = (used > 0).sum().float()
        return z_st, terms
