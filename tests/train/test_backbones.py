"""PointNet and DGCNN backbones: shapes, parameter counts, gradients, registry."""

from __future__ import annotations

import pytest
import torch

import pcssl_train.models.dgcnn  # noqa: F401  (registers "dgcnn")
import pcssl_train.models.pointnet  # noqa: F401  (registers "pointnet")
from pcssl_train.errors import TrainError
from pcssl_train.models.dgcnn import DGCNNClassifier, DGCNNEncoder, edge_features
from pcssl_train.models.pointnet import PointNetClassifier, PointNetEncoder, feature_transform_regularizer
from pcssl_train.models.registry import create_model


def cloud(B, N, seed=0):
    return torch.randn(B, N, 3, generator=torch.Generator().manual_seed(seed))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def check_backward(model, x):
    model.train()
    model(x).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------------------------ PointNet


def test_pointnet_encoder_shapes():
    out = PointNetEncoder()(cloud(3, 100))
    assert out["local"].shape == (3, 64, 100)
    assert out["global_feat"].shape == (3, 1024)
    assert out["feat_transform"].shape == (3, 64, 64)
    assert PointNetEncoder(feature_transform=False)(cloud(2, 50))["feat_transform"] is None
    assert PointNetEncoder(input_transform=False)(cloud(2, 50))["global_feat"].shape == (2, 1024)


def test_pointnet_classifier_shapes_and_params():
    model = PointNetClassifier()
    logits, trans = model(cloud(4, 128), return_transform=True)
    assert logits.shape == (4, 40) and trans.shape == (4, 64, 64)
    assert model.forward_features(cloud(4, 128)).shape == (4, 1024)
    # the paper's layout (64,64 | 64,128,1024 with both T-Nets): 3,480,049 parameters (~3.5M)
    assert num_params(model) == pytest.approx(3.47e6, rel=0.01)


def test_pointnet_transforms_start_at_identity():
    model = PointNetClassifier()
    _, trans = model(cloud(2, 64), return_transform=True)
    torch.testing.assert_close(trans, torch.eye(64).expand(2, 64, 64))
    assert feature_transform_regularizer(trans).item() == 0.0
    assert feature_transform_regularizer(2 * torch.eye(4)[None]).item() == pytest.approx(3 * 2)  # ||I-4I||_F


# --------------------------------------------------------------------------------------- DGCNN


def test_edge_features():
    x = cloud(2, 10).transpose(1, 2)  # (B, C=3, N)
    e = edge_features(x, 4)
    assert e.shape == (2, 6, 10, 4)
    # the nearest neighbour of every point is itself: x_j - x_i = 0, and the second half is x_i
    assert (e[:, :3, :, 0] == 0).all()
    assert torch.equal(e[:, 3:, :, 2], x)


@pytest.mark.parametrize("train", [True, False])
def test_edge_conv_equals_the_literal_form(train):
    from pcssl_train.models.dgcnn import EdgeConv

    torch.manual_seed(0)
    conv = EdgeConv(16, 32, 8).train(train)
    x = torch.randn(3, 16, 40, requires_grad=True)
    fast = conv(x)
    grads = torch.autograd.grad(fast.square().sum(), [x, conv.mlp[0].weight])
    slow = conv.forward_reference(x)
    ref_grads = torch.autograd.grad(slow.square().sum(), [x, conv.mlp[0].weight])
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_dgcnn_shapes_and_params():
    x = cloud(2, 48, seed=2)
    assert DGCNNEncoder(k=8, emb_dims=256)(x).shape == (2, 512)
    model = DGCNNClassifier(k=20)
    assert model(x).shape == (2, 40)
    assert model.forward_features(x).shape == (2, 2048)
    # the reference DGCNN classifier (k=20, emb_dims=1024, 40 classes): 1,809,576 parameters
    assert num_params(model) == pytest.approx(1.81e6, rel=0.01)


@pytest.mark.parametrize("make, n, seed", [(lambda: PointNetClassifier(num_classes=5), 64, 1),
                                           (lambda: DGCNNClassifier(num_classes=7, k=8, emb_dims=128), 40, 3)],
                         ids=["pointnet", "dgcnn"])
def test_backward_and_permutation_invariance(make, n, seed):
    model = make()
    x = cloud(2, n, seed=seed)
    check_backward(model, x)
    model.eval()
    with torch.no_grad():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(model(x), model(x[:, perm]), rtol=1e-4, atol=1e-5)


def test_dgcnn_needs_k_points():
    with pytest.raises(ValueError, match="k=20"):
        DGCNNEncoder(k=20)(cloud(1, 10))


# ------------------------------------------------------------------------------------ registry


def test_create_model():
    model = create_model("pointnet", num_classes=10)
    assert isinstance(model, PointNetClassifier)
    assert model(cloud(2, 32)).shape == (2, 10)
    model = create_model("dgcnn", num_classes=10, k=4, emb_dims=64)
    assert isinstance(model, DGCNNClassifier)
    assert model(cloud(2, 16)).shape == (2, 10)


def test_create_model_errors():
    with pytest.raises(TrainError, match="unknown model 'no_such_net'"):
        create_model("no_such_net")
    with pytest.raises(TrainError, match="unknown config key"):
        create_model("pointnet", width=3)


# ------------------------------------------------------------------------- shared interfaces

ENCODER_CONFIGS = {"point_transformer": dict(num_group=8, group_size=8, width=32, depth=1, num_heads=2, cls_token=True),
                   "pointnet_encoder": dict(feature_transform=False), "dgcnn_encoder": dict(k=4, emb_dims=32)}


def reference_features(name, encoder, x):
    """The pooled features as the evaluation computed them per architecture before ``forward_features``."""
    if name == "point_transformer":
        tokens = encoder.forward_points(x)[:, 1:]
        return torch.cat([tokens.amax(dim=1), tokens.mean(dim=1)], dim=-1)
    if name == "pointnet_encoder":
        per_point = encoder.mlp2(encoder(x)["local"])
        return torch.cat([per_point.amax(dim=2), per_point.mean(dim=2)], dim=-1)
    return encoder(x)


@pytest.mark.parametrize("name", ["point_transformer", "pointnet_encoder", "dgcnn_encoder"])
def test_point_encoders_share_forward_features_and_have_a_classifier(name):
    from pcssl_train.models import create_classifier, point_encoders

    assert point_encoders() == ["point_transformer", "pointnet_encoder", "dgcnn_encoder"]
    torch.manual_seed(0)
    encoder = create_model(name, **ENCODER_CONFIGS[name]).eval()
    x = cloud(3, 64)
    with torch.no_grad():
        assert torch.equal(encoder.forward_features(x), reference_features(name, encoder, x))
    model = create_classifier(name, ENCODER_CONFIGS[name], num_classes=5, drop_path=0.2)
    missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
    assert not missing and not unexpected
    assert model.eval()(x).shape == (3, 5)


def test_heads_keep_their_parameter_names():
    """Checkpoints store these names: a head moved between modules must not rename them."""
    from pcssl_train.models.heads import ClassificationHead, PatchReconstructionHead, ProjectionHead

    assert [k for k in ProjectionHead(4, 8, 2).state_dict() if not k.startswith("1.")] == [
        "0.weight", "0.bias", "3.weight", "3.bias"]
    assert list(PatchReconstructionHead(8, 4).state_dict()) == ["proj.weight", "proj.bias"]
    assert {k.split(".")[1] for k in ClassificationHead(8, 3).state_dict()} == {"0", "1", "4", "5", "8"}
