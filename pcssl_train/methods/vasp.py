"""VASP (Garg & Chaudhary, section 3.4): SeRP-Transformer with a vector-quantized bottleneck between
encoder and decoder (codebook 512 x 384, straight-through gradients, codebook + 0.25 x commitment).
``restart_after`` > 0 adds dead-code restarts (not in the paper; see models/quantizer.py)."""

from __future__ import annotations

import torch

from ..losses import VQLoss
from ..models.quantizer import VectorQuantizer
from .serp_transformer import SeRPTransformer


class VASP(SeRPTransformer):
    name = "vasp"

    def __init__(self, num_codes: int = 512, commitment: float = 0.25, restart_after: int = 0, **serp):
        super().__init__(**serp)
        self.quantizer = VectorQuantizer(num_codes, self.encoder_cfg["width"], restart_after)
        self.vq_loss = VQLoss(commitment)

    def bottleneck(self, z):
        z_st, z_q, codes = self.quantizer(z)
        terms = self.vq_loss(z, z_q)
        used = torch.bincount(codes.flatten(), minlength=self.quantizer.codebook.num_embeddings).float()
        p = used / used.sum()
        terms["perplexity"] = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
        terms["codes_used"] = (used > 0).sum().float()
        return z_st, terms
