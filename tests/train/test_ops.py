"""pcssl_train.ops against the naive references in pcssl_train.ops.reference, plus properties."""

from __future__ import annotations

import importlib
import itertools
import types

import pytest
import torch

from pcssl_train.ops import (HAS_PYTORCH3D, Patches, chamfer_distance, farthest_point_sample, gather_points,
                             group_patches, knn, nearest_neighbor_dist2, normalize_patches, project)
from pcssl_train.ops.knn import knn_graph
from pcssl_train.ops.reference import chamfer_distance_ref, farthest_point_sample_ref, group_patches_ref, knn_ref

# the module, not the function ``pcssl_train.ops.knn`` that shadows it as a package attribute
knn_module = importlib.import_module("pcssl_train.ops.knn")

DTYPES = [torch.float32, torch.float64]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cloud(*shape, seed=0, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}


# ----------------------------------------------------------------------------------------- FPS


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,n", [(1, 1, 1), (2, 40, 16), (3, 100, 32), (1, 24, 24), (2, 10, 0)])
def test_fps_matches_reference(B, N, n, dtype):
    xyz = cloud(B, N, 3, seed=N + n, dtype=dtype)
    idx = farthest_point_sample(xyz, n)
    assert idx.shape == (B, n) and idx.dtype == torch.long
    assert torch.equal(idx, farthest_point_sample_ref(xyz, n))


@pytest.mark.parametrize("start", [3, "centroid"])
def test_fps_start_matches_reference_and_numpy_core(start):
    """The start rule of cma_builder.geometry.fps: an index, or the point farthest from the centroid."""
    import numpy as np

    from cma_builder.geometry.fps import farthest_point_sample as fps_numpy

    xyz = cloud(3, 60, 3, seed=5)
    idx = farthest_point_sample(xyz, 12, start=start)
    assert torch.equal(idx, farthest_point_sample_ref(xyz, 12, start=start))
    assert np.array_equal(idx.numpy(), fps_numpy(xyz.numpy(), 12, start=start))
    if start == 3:
        assert (idx[:, 0] == 3).all()


def test_fps_ties_go_to_lowest_index():
    # integer grid with duplicates: many exactly equal distances
    grid = torch.tensor(list(itertools.product(range(3), repeat=3)), dtype=torch.float32)
    xyz = torch.cat([grid, grid.flip(0), grid[:5]])[None]
    for n in (1, 5, 27, 40):
        assert torch.equal(farthest_point_sample(xyz, n), farthest_point_sample_ref(xyz, n))
    # all points equal: 0 first, then 0 again (argmax of all-zero distances)
    assert farthest_point_sample(torch.ones(1, 4, 3), 3).tolist() == [[0, 0, 0]]


def test_fps_properties():
    xyz = cloud(4, 200, 3, seed=1)
    idx = farthest_point_sample(xyz, 32)
    assert (idx[:, 0] == 0).all()
    assert all(len(set(row.tolist())) == 32 for row in idx)

    def min_pairwise(points):
        d = torch.cdist(points, points).fill_diagonal_(float("inf"))
        return d.min()

    g = torch.Generator().manual_seed(0)
    for b in range(4):
        fps_spread = min_pairwise(xyz[b, idx[b]])
        for _ in range(10):
            random_subset = xyz[b, torch.randperm(200, generator=g)[:32]]
            assert fps_spread >= min_pairwise(random_subset)


def test_fps_low_precision_is_computed_in_float32():
    xyz = cloud(2, 64, 3, seed=2).half()
    assert torch.equal(farthest_point_sample(xyz, 16), farthest_point_sample(xyz.float(), 16))
    assert torch.equal(farthest_point_sample(xyz.bfloat16(), 8), farthest_point_sample(xyz.bfloat16().float(), 8))


def test_fps_errors():
    with pytest.raises(ValueError, match="n=11 .* N=10"):
        farthest_point_sample(torch.zeros(2, 10, 3), 11)
    with pytest.raises(ValueError, match=r"\(B, N, C\)"):
        farthest_point_sample(torch.zeros(10, 3), 2)
    with pytest.raises(ValueError, match="start must be"):
        farthest_point_sample(torch.zeros(2, 10, 3), 2, start=10)
    with pytest.raises(ValueError, match="start must be"):
        farthest_point_sample(torch.zeros(2, 10, 3), 2, start="first")


# ----------------------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,M,N,k,C", [(1, 1, 1, 1, 3), (2, 17, 50, 8, 3), (3, 40, 40, 40, 3), (2, 9, 30, 5, 16),
                                       (1, 5, 7, 0, 3)])
def test_knn_matches_reference(B, M, N, k, C, dtype):
    q, p = cloud(B, M, C, seed=M, dtype=dtype), cloud(B, N, C, seed=N + 1, dtype=dtype)
    dist2, idx = knn(q, p, k)
    ref_d, ref_i = knn_ref(q, p, k)
    assert dist2.shape == idx.shape == (B, M, k) and dist2.dtype == dtype and idx.dtype == torch.long
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist2.double(), ref_d, **tol(dtype))


def test_knn_sorted_and_exact_bruteforce():
    q, p = cloud(2, 30, 3, seed=3), cloud(2, 300, 3, seed=4)
    dist2, idx = knn(q, p, 20)
    assert (dist2[..., 1:] >= dist2[..., :-1]).all()
    brute = ((q[:, :, None] - p[:, None]) ** 2).sum(-1)  # (B, M, N)
    torch.testing.assert_close(dist2, brute.gather(2, idx), rtol=0, atol=0)
    assert torch.equal(dist2[..., 0], brute.min(-1).values)


def test_knn_ties_go_to_lowest_index():
    grid = torch.tensor(list(itertools.product(range(3), repeat=3)), dtype=torch.float64)
    p = torch.cat([grid, grid.flip(0)])[None]
    dist2, idx = knn(grid[None], p, 12)
    ref_d, ref_i = knn_ref(grid[None], p, 12)
    assert torch.equal(idx, ref_i) and torch.equal(dist2, ref_d)


def test_knn_is_exact_for_nearby_points_far_from_origin():
    # |q|^2 + |p|^2 - 2 q.p would cancel catastrophically here
    base = torch.full((1, 1, 3), 1000.0)
    offsets = torch.tensor([[[3e-3, 0, 0], [1e-3, 0, 0], [0, 2e-3, 0]]])
    dist2, idx = knn(base, base + offsets, 3)
    assert idx.tolist() == [[[1, 2, 0]]]
    assert (dist2 > 0).all()


@pytest.mark.parametrize("C", [3, 64, 128])
def test_knn_graph_matches_the_exact_neighbours(C):
    x = cloud(2, 120, C, seed=C) * 2
    idx = knn_graph(x, 20)
    ref_d, ref_i = knn_ref(x, x, 20)
    assert (idx[..., 0] == torch.arange(120)).all()                   # each point is its own nearest
    d = (x[:, :, None] - gather_points(x, idx)).square().sum(-1)
    torch.testing.assert_close(d.sort(-1).values, ref_d.to(d.dtype), rtol=1e-5, atol=1e-5)  # same distances
    assert (idx.sort(-1).values == ref_i.sort(-1).values).float().mean() > 0.999


def test_knn_graph_under_bf16_autocast_keeps_float32_ranking():
    x = cloud(2, 100, 64, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        idx = knn_graph(x, 10)
    assert torch.equal(idx, knn_graph(x, 10))


def test_knn_chunking_does_not_change_the_result(monkeypatch):
    q, p = cloud(3, 50, 8, seed=5), cloud(3, 60, 8, seed=6)
    full = knn(q, p, 7)
    monkeypatch.setattr(knn_module, "_MAX_CHUNK_ELEMENTS", 3 * 60 * 8 * 4)  # 4 query rows per chunk
    chunked = knn(q, p, 7)
    assert torch.equal(full[0], chunked[0]) and torch.equal(full[1], chunked[1])


def test_knn_gradients():
    q = cloud(2, 6, 3, seed=7, dtype=torch.float64).requires_grad_()
    p = cloud(2, 9, 3, seed=8, dtype=torch.float64).requires_grad_()
    with torch.no_grad():
        d_nograd, i_nograd = knn(q, p, 4)
    d, i = knn(q, p, 4)
    assert torch.equal(i, i_nograd)
    torch.testing.assert_close(d, d_nograd, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda a, b: knn(a, b, 4)[0], (q, p))


def test_knn_half_precision_computes_in_float32():
    q, p = cloud(2, 10, 3, seed=9).half(), cloud(2, 40, 3, seed=10).half()
    dist2, idx = knn(q, p, 5)
    ref = knn(q.float(), p.float(), 5)
    assert dist2.dtype == torch.float32
    assert torch.equal(idx, ref[1]) and torch.equal(dist2, ref[0])


def test_knn_errors():
    with pytest.raises(ValueError, match="k=6 .* N=5"):
        knn(torch.zeros(1, 2, 3), torch.zeros(1, 5, 3), 6)
    with pytest.raises(ValueError, match="channel"):
        knn(torch.zeros(1, 2, 3), torch.zeros(1, 5, 4), 1)
    with pytest.raises(ValueError, match="batch"):
        knn(torch.zeros(2, 2, 3), torch.zeros(1, 5, 3), 1)


# ------------------------------------------------------------------------------------ grouping


def test_gather_points():
    points = cloud(2, 10, 4, seed=11)
    idx = torch.randint(0, 10, (2, 3, 5, 2), generator=torch.Generator().manual_seed(0))
    out = gather_points(points, idx)
    assert out.shape == (2, 3, 5, 2, 4)
    expected = torch.stack([points[b][idx[b]] for b in range(2)])
    assert torch.equal(out, expected)
    assert gather_points(points, idx[:, 0, 0, 0]).shape == (2, 4)  # idx (B,) -> (B, C)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,G,K", [(1, 32, 4, 8), (2, 100, 16, 12), (2, 20, 20, 20)])
def test_group_patches_matches_reference(B, N, G, K, dtype):
    xyz = cloud(B, N, 3, seed=N + G, dtype=dtype)
    patches = group_patches(xyz, G, K)
    assert isinstance(patches, Patches)
    center, neighborhood, idx = group_patches_ref(xyz, G, K)
    assert patches.center.shape == (B, G, 3) and patches.neighborhood.shape == (B, G, K, 3)
    assert torch.equal(patches.idx, idx)
    torch.testing.assert_close(patches.center.double(), center, rtol=0, atol=0)
    torch.testing.assert_close(patches.neighborhood.double(), neighborhood, **tol(dtype))


def test_group_patches_properties():
    xyz = cloud(2, 128, 3, seed=12).requires_grad_()
    center, neighborhood, idx = group_patches(xyz, 8, 16)
    assert torch.equal(center, gather_points(xyz, farthest_point_sample(xyz, 8)))
    assert torch.equal(neighborhood, gather_points(xyz, idx) - center[:, :, None])
    assert (neighborhood[:, :, 0] == 0).all()  # nearest point of each center is itself
    (center.sum() + neighborhood.square().sum()).backward()
    assert xyz.grad is not None and torch.isfinite(xyz.grad).all()


def test_normalize_patches():
    neighborhood = cloud(2, 4, 16, 3, seed=13) * torch.tensor([0.01, 1.0, 5.0, 100.0])[None, :, None, None]
    neighborhood[1, 2] = 0.0  # a degenerate patch
    neighborhood.requires_grad_()
    out = normalize_patches(neighborhood)
    assert out.shape == neighborhood.shape
    std = out.detach().flatten(-2).std(dim=-1)
    torch.testing.assert_close(std[0], torch.ones(4), rtol=1e-3, atol=1e-3)
    assert (out[1, 2] == 0).all()
    out.square().sum().backward()
    assert torch.isfinite(neighborhood.grad).all()


# ------------------------------------------------------------------------------------- chamfer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("B,N,M", [(1, 1, 1), (2, 30, 45), (3, 64, 20)])
def test_chamfer_matches_reference(B, N, M, norm, dtype):
    x, y = cloud(B, N, 3, seed=N, dtype=dtype), cloud(B, M, 3, seed=M + 100, dtype=dtype)
    per_item = chamfer_distance(x, y, norm=norm, reduction="none")
    assert per_item.shape == (B,) and per_item.dtype == dtype
    torch.testing.assert_close(per_item.double(), chamfer_distance_ref(x, y, norm), **tol(dtype))
    torch.testing.assert_close(chamfer_distance(x, y, norm=norm), per_item.mean())


def test_nearest_neighbor_dist2():
    x, y = cloud(2, 20, 3, seed=14), cloud(2, 33, 3, seed=15)
    d1, idx = nearest_neighbor_dist2(x, y)
    ref_d, ref_i = knn_ref(x, y, 1)
    assert d1.shape == idx.shape == (2, 20)
    assert torch.equal(idx, ref_i[..., 0])
    torch.testing.assert_close(d1.double(), ref_d[..., 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", [1, 2])
def test_chamfer_zero_for_identical_sets_and_symmetric(norm):
    x, y = cloud(2, 40, 3, seed=16), cloud(2, 25, 3, seed=17)
    shuffled = x[:, torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    assert (chamfer_distance(x, shuffled, norm=norm, reduction="none") == 0).all()
    torch.testing.assert_close(chamfer_distance(x, y, norm=norm, reduction="none"),
                               chamfer_distance(y, x, norm=norm, reduction="none"), rtol=0, atol=0)


def test_chamfer_hand_made_example():
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    y = torch.tensor([[[0.0, 0, 0], [0, 2, 0]]])
    # d1 = (0, 1), d2 = (0, 4)
    assert chamfer_distance(x, y, norm=2).item() == pytest.approx(0.5 + 2.0)
    assert chamfer_distance(x, y, norm=1).item() == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.parametrize("norm", [1, 2])
def test_chamfer_gradcheck(norm):
    x = cloud(2, 5, 3, seed=18, dtype=torch.float64).requires_grad_()
    y = cloud(2, 7, 3, seed=19, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: chamfer_distance(a, b, norm=norm, reduction="none"), (x, y))


def test_chamfer_l1_gradient_finite_at_zero_distance():
    x = cloud(1, 8, 3, seed=20).requires_grad_()
    y = torch.cat([x.detach()[:, :4], cloud(1, 3, 3, seed=21)], dim=1).requires_grad_()  # 4 exact matches
    chamfer_distance(x, y, norm=1).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_chamfer_errors():
    x = torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match="norm"):
        chamfer_distance(x, x, norm=3)
    with pytest.raises(ValueError, match="reduction"):
        chamfer_distance(x, x, reduction="sum")
    with pytest.raises(ValueError, match="non-empty"):
        chamfer_distance(x, torch.zeros(1, 0, 3))


# ---------------------------------------------------------------------------------- projection


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_matches_numpy_core(dtype):
    """One camera per cloud, as ``cma_builder.geometry.cameras.project`` (the reference) per camera."""
    import numpy as np

    from cma_builder.geometry.cameras import ViewpointSpec, camera_rig
    from cma_builder.geometry.cameras import project as project_numpy

    K, w2c = camera_rig(ViewpointSpec("sphere", 3), "m", np.zeros(3), 1.0, 40.0, 64)
    xyz = cloud(3, 50, 3, seed=30, dtype=torch.float64) * 0.3
    pix, z = project(xyz.to(dtype), torch.from_numpy(K).to(dtype), torch.from_numpy(w2c).to(dtype))
    assert pix.dtype == dtype and pix.shape == (3, 50, 2) and z.shape == (3, 50)
    for b in range(3):
        want_pix, want_z = project_numpy(xyz[b].numpy(), K[b], w2c[b])
        torch.testing.assert_close(pix[b], torch.from_numpy(want_pix).to(dtype), **tol(dtype))
        torch.testing.assert_close(z[b], torch.from_numpy(want_z).to(dtype), **tol(dtype))
    behind = torch.tensor([[[0.1, 0.2, -9.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    pix, z = project(behind, torch.from_numpy(K[:1]), torch.eye(4, dtype=torch.float64)[None])
    assert torch.isfinite(pix).all() and z.tolist() == [[-9.0, 0.0]]  # z clamped for the division only


# ----------------------------------------------------------------------------- devices, pytorch3d


@CUDA
def test_ops_on_cuda_match_cpu(monkeypatch):
    monkeypatch.setenv("PCSSL_NO_PYTORCH3D", "1")
    xyz = cloud(2, 500, 3, seed=22)
    gpu = xyz.cuda()
    assert torch.equal(farthest_point_sample(gpu, 64).cpu(), farthest_point_sample(xyz, 64))
    d, i = knn(gpu[:, :50], gpu, 16)
    d_cpu, i_cpu = knn(xyz[:, :50], xyz, 16)
    assert torch.equal(i.cpu(), i_cpu)
    torch.testing.assert_close(d.cpu(), d_cpu)
    patches = group_patches(gpu, 32, 16)
    assert patches.neighborhood.device == gpu.device and torch.equal(patches.idx.cpu(), group_patches(xyz, 32, 16).idx)
    x = gpu.clone().requires_grad_()
    loss = chamfer_distance(x, gpu.flip(1) + 0.01, norm=1)
    loss.backward()
    torch.testing.assert_close(loss.cpu(), chamfer_distance(xyz, xyz.flip(1) + 0.01, norm=1))
    assert torch.isfinite(x.grad).all()


@pytest.mark.skipif(not (HAS_PYTORCH3D and torch.cuda.is_available()), reason="needs pytorch3d and CUDA")
def test_pytorch3d_dispatch_agrees(monkeypatch):
    xyz = cloud(2, 1000, 3, seed=23, device="cuda")
    feats = cloud(2, 300, 64, seed=24, device="cuda")
    monkeypatch.delenv("PCSSL_NO_PYTORCH3D", raising=False)
    fast = (farthest_point_sample(xyz, 128), knn(xyz[:, :100], xyz, 16), knn(feats, feats, 20))
    monkeypatch.setenv("PCSSL_NO_PYTORCH3D", "1")
    slow = (farthest_point_sample(xyz, 128), knn(xyz[:, :100], xyz, 16), knn(feats, feats, 20))
    assert torch.equal(fast[0], slow[0])
    for (d_fast, i_fast), (d_slow, i_slow) in zip(fast[1:], slow[1:]):
        assert torch.equal(i_fast, i_slow)
        torch.testing.assert_close(d_fast, d_slow)


def test_pytorch3d_gate(monkeypatch):
    fake = object()
    monkeypatch.setattr(knn_module, "_P3D", fake)
    cuda_f32 = types.SimpleNamespace(is_cuda=True, dtype=torch.float32)
    monkeypatch.delenv("PCSSL_NO_PYTORCH3D", raising=False)
    assert knn_module._pytorch3d_for(cuda_f32, (torch.float32,)) is fake
    assert knn_module._pytorch3d_for(torch.zeros(1), (torch.float32,)) is None  # CPU tensor
    assert knn_module._pytorch3d_for(cuda_f32, (torch.float64,)) is None  # unsupported dtype
    monkeypatch.setenv("PCSSL_NO_PYTORCH3D", "1")
    assert knn_module._pytorch3d_for(cuda_f32, (torch.float32,)) is None
