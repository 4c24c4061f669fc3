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
