"""Transformer building blocks (pre-norm ViT blocks as used by Point-MAE), written here so the
project needs neither timm nor torchvision. Attention goes through ``F.scaled_dot_product_attention``."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``p``."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention; ``qkv_bias=False`` as in Point-MAE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, mask: torch.Tensor | None = None):
        """``mask``: None, (B,L) bool keys to attend to (key padding), or (B,L,L) bool per query."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(mask),
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


def attention_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B,L) key mask or (B,Lq,L) mask, True = attend -> the (B,1,Lq|1,L) boolean SDPA mask."""
    if mask is None:
        return None
    return mask[:, None, None, :] if mask.ndim == 2 else mask[:, None]


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` (B,Lq,C) over ``context`` (B,L,C)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, context, mask: torch.Tensor | None = None):
        """``mask``: None or (B,L) bool, True = context token to attend to."""
        b, n, c = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(mask))
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)), each with drop path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0, drop: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x, mask: torch.Tensor | None = None):
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossBlock(nn.Module):
    """Pre-norm cross-attention block: x + cross_attn(norm(x), norm(context)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, context, mask: torch.Tensor | None = None):
        x = x + self.drop_path(self.attn(self.norm_q(x), self.norm_kv(context), mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Linearly increasing stochastic-depth rates, 0 for the first block up to ``rate``."""
    return [float(r) for r in torch.linspace(0, rate, depth)] if depth > 1 else [0.0] * depth


class TransformerStack(nn.Module):
    """``depth`` blocks; the position embedding is re-added before every block (Point-MAE)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, p) for p in drop_path_rates(drop_path_rate, depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, pos, return_last: int | None = None, mask: torch.Tensor | None = None):
        """``mask``: see :class:`Attention`; outputs at padded positions are meaningless."""
        for block in self.blocks:
            x = block(x + pos, mask)
        if return_last is not None:
            x = x[:, -return_last:]
        return self.norm(x)

    def forward_layers(self, x, pos, layers, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Outputs of the chosen blocks, each through the final ``norm`` (Point-MAE's segmentation model).

        ``layers``: 0-based block indices (negative ones count from the end; Point-MAE's ``fetch_idx``
        is [3, 7, 11] for depth 12), returned in the order given. The output of the last block equals
        ``forward(x, pos, mask=mask)``. Blocks after the deepest one asked for are not run."""
        depth = len(self.blocks)
        index = []
        for i in layers:
            i = int(i)
            if not -depth <= i < depth:
                raise ValueError(f"layer index {i} out of range for a stack of {depth} blocks")
            index.append(i % depth)
        if not index:
            return []
        wanted, outputs = set(index), {}
        for i, block in enumerate(self.blocks[:max(index) + 1]):
            x = block(x + pos, mask)
            if i in wanted:
                outputs[i] = self.norm(x)
        return [outputs[i] for i in index]


def init_weights(module: nn.Module) -> None:
    """Point-MAE's initialization: truncated normal (std 0.02) for linear/conv, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
