"""Losses against naive per-anchor loops written from their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from pcssl_train.losses import NTXentLoss, SymmetricInfoNCELoss, VQLoss


def cos(x, y):
    return float(torch.dot(x, y) / (x.norm() * y.norm()))


def nt_xent_reference(a, b, t):
    z = list(a) + list(b)
    n, total = len(a), 0.0
    for i, x in enumerate(z):
        pos = (i + n) % (2 * n)
        den = sum(math.exp(cos(x, y) / t) for j, y in enumerate(z) if j != i)
        total += -math.log(math.exp(cos(x, z[pos]) / t) / den)
    return total / (2 * n)


def info_nce_reference(a, b, t):
    n, rows, cols = len(a), 0.0, 0.0
    for i in range(n):
        rows += -math.log(math.exp(cos(a[i], b[i]) / t) / sum(math.exp(cos(a[i], b[j]) / t) for j in range(n)))
        cols += -math.log(math.exp(cos(b[i], a[i]) / t) / sum(math.exp(cos(b[i], a[j]) / t) for j in range(n)))
    return 0.5 * (rows + cols) / n


@pytest.mark.parametrize("n, d, t", [(2, 3, 0.1), (5, 8, 0.5), (7, 4, 0.07)])
def test_contrastive_losses_match_reference(n, d, t):
    g = torch.Generator().manual_seed(n)
    a, b = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    assert NTXentLoss(t)(a, b).item() == pytest.approx(nt_xent_reference(a, b, t), rel=1e-5)
    assert SymmetricInfoNCELoss(t)(a, b).item() == pytest.approx(info_nce_reference(a, b, t), rel=1e-5)
    assert NTXentLoss(t)(a, b).item() == pytest.approx(NTXentLoss(t)(b, a).item(), rel=1e-6)


def test_contrastive_losses_reward_alignment():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 32, generator=g)
    for loss in (NTXentLoss(0.1), SymmetricInfoNCELoss(0.07)):
        assert loss(a, a + 0.01 * torch.randn(16, 32, generator=g)) < loss(a, torch.randn(16, 32, generator=g))


def test_vq_loss_terms_and_gradients():
    z_e = torch.tensor([[1.0, 2.0]], requires_grad=True)
    z_q = torch.tensor([[0.0, 0.0]], requires_grad=True)
    out = VQLoss(0.25)(z_e, z_q)
    assert out["codebook"].item() == out["commitment"].item() == pytest.approx(2.5)
    out["vq"].backward()
    assert torch.allclose(z_q.grad, torch.tensor([[-1.0, -2.0]]))           # codebook term moves the code
    assert torch.allclose(z_e.grad, 0.25 * torch.tensor([[1.0, 2.0]]))      # commitment term moves z_e
