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


def test_vector_quantizer_restarts_only_idle_codes():
    from pcssl_train.models.quantizer import VectorQuantizer

    torch.manual_seed(0)
    z = torch.cat([torch.full((4, 3), 5.0), torch.full((4, 3), -5.0)]) + 0.01 * torch.randn(8, 3)
    off = VectorQuantizer(6, 3)
    before = off.codebook.weight.clone()
    for _ in range(5):
        off(z)
    assert torch.equal(off.codebook.weight, before)  # restart_after=0: the paper's VQ, untouched

    vq = VectorQuantizer(6, 3, restart_after=2)
    start = vq.codebook.weight.clone()
    codes = vq.lookup(z)
    used = codes.unique()
    assert len(used) < 6  # collapsed: the tiny initial codes are all far from z
    vq(z)
    assert torch.equal(vq.codebook.weight, start) and (vq.idle_steps[used] == 0).all()
    vq(z)  # second idle step: every unused code jumps onto an encoder output of the batch
    moved = [c for c in range(6) if c not in used.tolist()]
    assert torch.equal(vq.codebook.weight[used], start[used])
    for c in moved:
        assert (vq.codebook.weight[c] == z).all(dim=1).any()
    assert (vq.idle_steps == 0).all()
    assert (vq.codebook(vq.lookup(z)) - z).norm(dim=1).max() < 0.1  # both clusters now have codes on them
    vq.eval()
    frozen = vq.codebook.weight.clone()
    for _ in range(4):
        vq(torch.zeros(3, 3))
    assert torch.equal(vq.codebook.weight, frozen)  # never in eval mode


def _restart_rank(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from pcssl_train.models.quantizer import VectorQuantizer

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)  # the same initial codebook on both ranks, as DDP's broadcast gives
    vq = VectorQuantizer(6, 3, restart_after=1)
    vq.codebook.weight.data[0] = torch.full((3,), 5.0)  # code 0: near rank 0's tokens only
    vq.codebook.weight.data[1] = torch.full((3,), -5.0)  # code 1: near rank 1's tokens only
    torch.manual_seed(100 + rank)  # different batches and a different RNG state per rank
    z = torch.full((4, 3), 5.0 if rank == 0 else -5.0) + 0.01 * torch.randn(4, 3)
    vq(z)
    torch.save({"codebook": vq.codebook.weight.detach().clone(), "z": z}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_vector_quantizer_restarts_stay_in_sync_under_ddp(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_restart_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["codebook"], r1["codebook"])  # one codebook across processes
    assert torch.equal(r0["codebook"][0], torch.full((3,), 5.0))  # used on rank 0 only: kept
    assert torch.equal(r0["codebook"][1], torch.full((3,), -5.0))  # used on rank 1 only: kept
    for c in range(2, 6):  # idle everywhere: moved onto rank 0's tokens (broadcast)
        assert (r0["codebook"][c] == r0["z"]).all(dim=1).any()
