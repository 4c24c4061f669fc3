"""SeRP's corruption, its loss (with the chance levels it reports) and SeRP-PointNet's feature-transform
regularizer, checked against their definitions."""

from __future__ import annotations

import pytest
import torch

from pcssl_train.losses import PerturbationLoss
from pcssl_train.methods import create_method
from pcssl_train.methods.perturb import perturb_patches
from pcssl_train.models.pointnet import feature_transform_regularizer


def test_perturb_patches_shifts_whole_knn_patches():
    torch.manual_seed(0)
    xyz = torch.rand(3, 200, 3)
    noisy, perturbed = perturb_patches(xyz, num_patches=1, patch_size=15, sigma=0.05)
    shift = noisy - xyz
    for b in range(3):
        moved = perturbed[b]
        assert int(moved.sum()) == 15
        assert torch.all(shift[b][~moved] == 0)
        # one offset for the whole patch, and the patch is the 15 points nearest some point of it
        assert torch.allclose(shift[b][moved], shift[b][moved][0].expand(15, 3))
        centers = [i for i in moved.nonzero().flatten().tolist()
                   if set(torch.cdist(xyz[b][i:i + 1], xyz[b]).topk(15, largest=False).indices[0].tolist())
                   == set(moved.nonzero().flatten().tolist())]
        assert centers, "the perturbed set is not the kNN patch of any of its points"


def test_perturbation_loss_terms_and_chance_levels():
    torch.manual_seed(1)
    clean = torch.rand(2, 64, 3)
    noisy, perturbed = perturb_patches(clean, num_patches=4, patch_size=8, sigma=0.1)
    loss = PerturbationLoss("delta", alpha_cls=0.5, alpha_rec=2.0)
    logits = torch.randn(2, 2, 64)
    exact = loss(logits, clean - noisy, perturbed, noisy, clean)
    assert float(exact["rec"]) == pytest.approx(0.0, abs=1e-12)
    zero = loss(logits, torch.zeros_like(clean), perturbed, noisy, clean)
    assert float(zero["rec"]) == pytest.approx(float(zero["rec_zero"]), rel=1e-6)
    assert float(zero["rec_zero"]) == pytest.approx(float(((clean - noisy) ** 2).mean()), rel=1e-6)
    assert float(zero["cls_acc_chance"]) == pytest.approx(1 - float(perturbed.float().mean()))
    # every point called unperturbed scores exactly the chance level
    unperturbed = torch.stack([torch.ones(2, 64), torch.zeros(2, 64)], dim=1)
    assert float(loss(unperturbed, clean, perturbed, noisy, clean)["cls_acc"]) == pytest.approx(
        float(zero["cls_acc_chance"]))
    ce = torch.nn.functional.cross_entropy(logits, perturbed.long())
    assert float(zero["loss"]) == pytest.approx(float(0.5 * ce + 2.0 * zero["rec"]), rel=1e-6)


def test_feature_transform_regularizer_matches_definition():
    torch.manual_seed(2)
    a = torch.randn(3, 5, 5)
    ref = sum(float(torch.sqrt(((torch.eye(5) - m @ m.T) ** 2).sum())) for m in a) / 3
    assert float(feature_transform_regularizer(a)) == pytest.approx(ref, rel=1e-5)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    assert float(feature_transform_regularizer(q[None])) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("feature_reg", [0.0, 0.25])
def test_serp_pointnet_adds_the_regularizer(feature_reg):
    torch.manual_seed(3)
    method = create_method("serp-pointnet", perturb_patches=4, perturb_points=8, feature_reg=feature_reg)
    torch.nn.init.normal_(method.encoder.feature_tnet.out.weight, std=0.05)  # off the identity it starts at
    points = torch.rand(4, 64, 3)
    out = method({"points": points})
    base = 0.001 * out["cls"] + 1.5 * out["rec"]
    if feature_reg:
        assert float(out["feat_reg"]) > 0
        assert float(out["loss"]) == pytest.approx(float(base + feature_reg * out["feat_reg"]), rel=1e-5)
    else:
        assert "feat_reg" not in out and float(out["loss"]) == pytest.approx(float(base), rel=1e-5)


def test_regularizer_alone_trains_only_what_feeds_the_feature_transform():
    torch.manual_seed(4)
    method = create_method("serp-pointnet", perturb_patches=4, perturb_points=8, alpha_cls=0.0, alpha_rec=0.0,
                           feature_reg=1.0)
    # move the transform off the identity (its last layer starts at zero), so the penalty has a gradient
    torch.nn.init.normal_(method.encoder.feature_tnet.out.weight, std=0.05)
    method({"points": torch.rand(4, 64, 3)})["loss"].backward()
    grads = {n: p.grad for n, p in method.named_parameters()}
    assert grads["encoder.feature_tnet.out.weight"].abs().sum() > 0
    assert grads["encoder.mlp1.0.weight"].abs().sum() > 0
    for name in ("cls_head.weight", "rec_head.weight", "point_features.0.weight", "encoder.mlp2.0.weight"):
        assert grads[name] is None or float(grads[name].abs().sum()) == 0.0, name


# --- official-code choices (github.com/muditchaudhary/SERP-Net), each behind a config key --------------

from pcssl_train.engine.config import load_config  # noqa: E402
from pcssl_train.losses import VQLoss  # noqa: E402
from pcssl_train.methods.perturb import renormalize  # noqa: E402
from pcssl_train.models.quantizer import VectorQuantizer  # noqa: E402


def tiny_model_cfg(name: str, **overrides) -> dict:
    return {**load_config(name, f"{name}-tiny")["model"], **overrides}


@pytest.mark.parametrize("overlap", ["overwrite", "add"])
def test_perturb_overlap_matches_a_naive_loop(overlap):
    """Overwrite: a point keeps the offset of the last patch drawn (the official loop); add: offsets sum."""
    torch.manual_seed(5)
    xyz = torch.rand(2, 60, 3)
    torch.manual_seed(6)
    noisy, perturbed = perturb_patches(xyz, num_patches=8, patch_size=15, sigma=0.1, overlap=overlap)
    torch.manual_seed(6)  # redraw what perturb_patches drew: centers, then offsets
    centers = torch.rand(2, 60).argsort(dim=1)[:, :8]
    offsets = torch.randn(2, 8, 3) * 0.1
    for b in range(2):
        jitter, covered = torch.zeros(60, 3), torch.zeros(60, dtype=torch.long)
        for i in range(8):
            patch = torch.cdist(xyz[b, centers[b, i]][None], xyz[b]).topk(15, largest=False).indices[0]
            jitter[patch] = offsets[b, i] if overlap == "overwrite" else jitter[patch] + offsets[b, i]
            covered[patch] += 1
        assert (covered > 1).any(), "the test needs overlapping patches"
        assert torch.allclose(noisy[b] - xyz[b], jitter, atol=1e-6)
        assert torch.equal(perturbed[b], covered > 0)


def test_renormalize_uses_the_clean_clouds_centroid_and_radius():
    torch.manual_seed(7)
    clean = torch.rand(3, 50, 3) * 2 + 0.3
    noisy = clean + 0.05 * torch.randn_like(clean)
    c, n = renormalize(clean, noisy)
    for b in range(3):
        center, radius = clean[b].mean(0), clean[b].norm(dim=1).max()  # official: the norm before centring
        assert torch.allclose(c[b], (clean[b] - center) / radius, atol=1e-6)
        assert torch.allclose(n[b], (noisy[b] - center) / radius, atol=1e-6)


def test_weighted_cross_entropy_is_the_hand_computation():
    torch.manual_seed(8)
    clean = torch.rand(2, 64, 3)
    noisy, perturbed = perturb_patches(clean, num_patches=3, patch_size=8, sigma=0.1)
    logits = torch.randn(2, 2, 64)
    weighted = PerturbationLoss(cls_weights=(0.25, 0.75))(logits, clean - noisy, perturbed, noisy, clean)
    plain = PerturbationLoss(cls_weights=None)(logits, clean - noisy, perturbed, noisy, clean)
    y = perturbed.long().flatten()
    nll = -torch.log_softmax(logits.transpose(1, 2).reshape(-1, 2), dim=1)[torch.arange(len(y)), y]
    w = torch.tensor([0.25, 0.75])[y]
    assert float(weighted["cls"]) == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-6)
    assert float(plain["cls"]) == pytest.approx(float(nll.mean()), rel=1e-6)
    assert create_method("serp-pointnet").loss.cls_weights.tolist() == [0.25, 0.75]  # the default


def test_codebook_init_ranges():
    torch.manual_seed(9)
    official = VectorQuantizer(512, 384, init="uniform01").codebook.weight
    assert 0 <= float(official.min()) < 0.01 and 0.99 < float(official.max()) < 1
    assert float(official.mean()) == pytest.approx(0.5, abs=0.01)
    small = VectorQuantizer(512, 384, init="uniform_inv_k").codebook.weight
    assert float(small.abs().max()) <= 1 / 512 and float(small.min()) < 0 < float(small.max())
    method = create_method("vasp", **tiny_model_cfg("vasp"))
    assert float(method.quantizer.codebook.weight.min()) >= 0 and float(method.vq_loss.codebook_weight) == 0.25
    with pytest.raises(ValueError):
        VectorQuantizer(4, 3, init="normal")


def test_codebook_weight_scales_only_the_codebook_term():
    z_e = torch.tensor([[1.0, 2.0]], requires_grad=True)
    z_q = torch.tensor([[0.0, 0.0]], requires_grad=True)
    out = VQLoss(beta=0.25, codebook_weight=0.25)(z_e, z_q)
    assert float(out["vq"]) == pytest.approx(0.25 * 2.5 + 0.25 * 2.5)
    out["vq"].backward()
    assert torch.allclose(z_q.grad, 0.25 * torch.tensor([[-1.0, -2.0]]))   # codebook term, 0.25 x
    assert torch.allclose(z_e.grad, 0.25 * torch.tensor([[1.0, 2.0]]))     # commitment, unchanged


def naive_chamfer_l2(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(p.double(), t.double()) ** 2
    return d.min(dim=1).values.mean() + d.min(dim=0).values.mean()


@pytest.mark.parametrize("chamfer_over", ["cloud", "patch"])
@pytest.mark.parametrize("rec_center", ["clean", "perturbed"])
def test_serp_transformer_reconstruction_matches_a_naive_chamfer(chamfer_over, rec_center):
    torch.manual_seed(10)
    method = create_method("serp-transformer", **tiny_model_cfg("serp-transformer", chamfer_over=chamfer_over,
                                                                rec_center=rec_center))
    seen = {}
    group, target = method.encoder.group, method.reconstruction_target
    method.encoder.group = lambda noisy: seen.setdefault("patches", group(seen.setdefault("noisy", noisy)))
    method.reconstruction_target = lambda clean, patches: target(seen.setdefault("clean", clean), patches)
    method.head.register_forward_hook(lambda m, i, out: seen.setdefault("pred", out.detach()))
    out = method({"points": torch.rand(3, 256, 3)})
    noisy, clean, patches, pred = seen["noisy"], seen["clean"], seen["patches"], seen["pred"]
    b, g, k = patches.idx.shape
    per_cloud, per_patch = [], []
    for i in range(b):
        targets, preds = [], []
        for j in range(g):
            idx = patches.idx[i, j]
            assert torch.equal(noisy[i, idx[0]], patches.center[i, j])  # the patch's center point
            center = clean[i, idx[0]] if rec_center == "clean" else patches.center[i, j]
            targets.append(clean[i, idx] - center)
            preds.append(pred[i * g + j])
            per_patch.append(naive_chamfer_l2(preds[-1], targets[-1]))
        per_cloud.append(naive_chamfer_l2(torch.cat(preds), torch.cat(targets)))
    ref = torch.stack(per_cloud if chamfer_over == "cloud" else per_patch).mean()
    assert float(out["rec"]) == pytest.approx(float(ref), rel=1e-4)


def train_steps(method, steps: int = 3, lr: float = 1e-3) -> list[float]:
    """Losses of ``steps`` Adam steps on one fixed batch with the same corruption every step."""
    torch.manual_seed(11)
    points = torch.rand(4, 64, 3) * 2 - 1
    opt = torch.optim.Adam(method.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        torch.manual_seed(12)
        loss = method({"points": points})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


SWITCHES = [  # (method, key, [official default, alternative]); the perturbation keys share perturb.py
    ("serp-pointnet", "cls_weights", [[0.25, 0.75], None]),
    ("serp-pointnet", "perturb_overlap", ["overwrite", "add"]),
    ("serp-pointnet", "normalize_after_perturb", [True, False]),
    ("serp-transformer", "chamfer_over", ["cloud", "patch"]),
    ("serp-transformer", "rec_center", ["clean", "perturbed"]),
    ("vasp", "codebook_weight", [0.25, 1.0]),
    ("vasp", "codebook_init", ["uniform01", "uniform_inv_k"]),
]


SWITCH_SETTINGS = [(n, k, v) for n, k, values in SWITCHES for v in values]


@pytest.mark.parametrize("name,key,value", SWITCH_SETTINGS, ids=lambda x: str(x))
def test_every_switch_setting_takes_a_step(name, key, value):
    """The quick tier's share of test_every_switch_setting_trains: one Adam step, a finite loss and a
    finite gradient that reaches the encoder."""
    torch.manual_seed(13)
    method = create_method(name, **tiny_model_cfg(name, **{key: value}))
    loss = train_steps(method, steps=1)[0]
    assert torch.isfinite(torch.tensor(loss))
    grads = [p.grad for p in method.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.slow
@pytest.mark.parametrize("name,key,value", SWITCH_SETTINGS, ids=lambda x: str(x))
def test_every_switch_setting_trains(name, key, value):
    """10 Adam steps on one batch: the mean of the last 3 losses is below 0.95 x the first. Measured
    (seeds 13-15; torch's AVX-512, AVX2 and default kernels with oneDNN and MKL held to the same ISA;
    1 and 2 threads) the ratio is at most 0.90 (0.86 at this seed) and moves by at most 0.04 between
    kernel sets. Three steps were not enough: the loss can rise at step 2, and on AVX2 oneDNN kernels
    serp-pointnet without normalize_after_perturb ended 0.5 % above where it started."""
    torch.manual_seed(13)
    cfg = tiny_model_cfg(name, **{key: value})
    assert load_config(name)["model"][key] == SWITCHES_DEFAULTS[(name, key)]  # the full config: official
    losses = train_steps(create_method(name, **cfg), steps=10)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.95 * losses[0], losses


SWITCHES_DEFAULTS = {(n, k): values[0] for n, k, values in SWITCHES}
