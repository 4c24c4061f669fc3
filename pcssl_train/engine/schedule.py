"""Learning rate: linear warmup then cosine decay to ``min_lr``, stepped every optimizer step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total: int, warmup: int, base_lr: float, min_lr: float, warmup_lr: float) -> float:
    if step < warmup:
        return warmup_lr + (base_lr - warmup_lr) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float,
                   warmup_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    base = optimizer.param_groups[0]["lr"]

    def factor(step: int) -> float:
        return warmup_cosine(step, total_steps, warmup_steps, base, min_lr, warmup_lr) / base

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
