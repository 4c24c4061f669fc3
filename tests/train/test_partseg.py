"""Part segmentation fine-tuning (Point-MAE protocol): interpolation, mIoU, layer outputs, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cma_builder.geometry.normalize import normalize_clouds
from pcssl_train.errors import TrainError
from pcssl_train.eval.partseg import (PartSegModel, feature_layers, finetune_partseg, interpolate_features, part_miou,
                                      restrict_predictions)
from pcssl_train.eval.pointset import PointSet
from pcssl_train.models.point_transformer import PointTransformerEncoder

TINY = dict(num_group=16, group_size=16, width=32, depth=3, num_heads=2, drop_path=0.0)


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: a second intra-op thread barely helps, and on a busy 2-core machine
    OpenMP's spin-waiting makes two threads over 10x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------- interpolation


def interpolate_ref(xyz, centers, feats, k=3):
    """Per point: the k nearest centers by (squared distance, index), weights 1/(d2+1e-8) normalized."""
    out = []
    for pts, cs, fs in zip(xyz.double().tolist(), centers.double().tolist(), feats.double().tolist()):
        rows = []
        for p in pts:
            d2 = sorted((sum((a - b) ** 2 for a, b in zip(p, c)), j) for j, c in enumerate(cs))[:k]
            w = [1.0 / (d + 1e-8) for d, _ in d2]
            rows.append([sum(wi * fs[j][ch] for wi, (_, j) in zip(w, d2)) / sum(w) for ch in range(len(fs[0]))])
        out.append(rows)
    return torch.tensor(out, dtype=torch.float64)


def test_interpolation_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    xyz, centers, feats = torch.randn(2, 40, 3, generator=g), torch.randn(2, 7, 3, generator=g), torch.randn(2, 7, 5, generator=g)
    centers[:, 0] = xyz[:, 3]  # a point on a center takes (almost exactly) that center's feature
    got = interpolate_features(xyz, centers, feats)
    assert got.shape == (2, 40, 5)
    torch.testing.assert_close(got.double(), interpolate_ref(xyz, centers, feats), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[:, 3], feats[:, 0], rtol=1e-5, atol=1e-5)
    # fewer than 3 centers: k is capped
    torch.testing.assert_close(interpolate_features(xyz, centers[:, :2], feats[:, :2]).double(),
                               interpolate_ref(xyz, centers[:, :2], feats[:, :2], k=2), rtol=1e-5, atol=1e-5)


def test_feature_layers():
    assert feature_layers(12) == [3, 7, 11]
    assert feature_layers(3) == [0, 1, 2]
    assert feature_layers(6) == [1, 3, 5]
    assert feature_layers(1) == [0]
    assert feature_layers(2) == [0, 1]


# --------------------------------------------------------------------------------------- metrics


def test_part_miou_hand_computed():
    parts = [[0, 1], [2, 3, 4]]
    names = ["mug", "lamp"]
    seg = np.array([[0, 0, 1, 1],    # mug
                    [0, 0, 0, 0],    # mug, part 1 absent
                    [2, 2, 3, 3]])   # lamp, part 4 absent
    pred = np.array([[0, 1, 1, 1],   # part 0: 1/2, part 1: 2/3
                     [0, 0, 0, 0],   # part 0: 1, part 1 absent in both: 1.0
                     [2, 3, 3, 4]])  # part 2: 1/2, part 3: 1/3, part 4: predicted, absent -> 0
    labels = np.array([0, 0, 1])
    shape = [(1 / 2 + 2 / 3) / 2, 1.0, (1 / 2 + 1 / 3 + 0) / 3]
    m = part_miou(pred, seg, labels, parts, names)
    assert m["instance_miou"] == pytest.approx(sum(shape) / 3)
    assert m["per_category"] == pytest.approx({"mug": (shape[0] + shape[1]) / 2, "lamp": shape[2]})
    assert m["category_miou"] == pytest.approx(((shape[0] + shape[1]) / 2 + shape[2]) / 2)
    assert m["category_miou"] != pytest.approx(m["instance_miou"])
    # a prediction outside the category's parts counts against the true part (in its union only)
    m = part_miou(np.array([[2, 0, 1, 1]]), seg[:1], labels[:1], parts)
    assert m["instance_miou"] == pytest.approx((1 / 2 + 1) / 2) and list(m["per_category"]) == ["0"]


def test_predictions_restricted_to_category_parts():
    parts = [[0, 1], [2, 3, 4]]
    logits = torch.zeros(2, 5, 3)
    logits[:, 4] = 10.0                      # the globally best part is 4 (a lamp part) everywhere
    logits[0, 1, :] = 1.0                    # mug: part 1 is its best own part
    logits[1, 2, 0], logits[1, 3, 1] = 20.0, 20.0
    labels = torch.tensor([0, 1])
    pred = restrict_predictions(logits, labels, parts)
    assert pred.tolist() == [[1, 1, 1], [2, 3, 4]]
    seg = np.array([[1, 1, 1], [2, 3, 4]])
    assert part_miou(logits, seg, labels, parts)["instance_miou"] == pytest.approx(1.0)
    assert part_miou(logits.argmax(1), seg, labels, parts)["instance_miou"] < 1.0  # unrestricted argmax


# ------------------------------------------------------------------------------------ the model


def test_forward_layers_match_forward():
    torch.manual_seed(0)
    for cls_token in (False, True):
        enc = PointTransformerEncoder(**TINY, cls_token=cls_token).eval()
        xyz = torch.randn(2, 256, 3, generator=torch.Generator().manual_seed(1))
        p = enc.group(xyz)
        with torch.no_grad():
            outs = enc.forward_layers(p.neighborhood, p.center, [0, 1, 2])
            ref = enc(p.neighborhood, p.center)
            assert len(outs) == 3 and all(o.shape == ref.shape for o in outs)
            torch.testing.assert_close(outs[-1], ref)
            assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
            torch.testing.assert_close(enc.forward_layers(p.neighborhood, p.center, [-1, 0])[0], ref)
    with pytest.raises(ValueError):
        enc.transformer.forward_layers(torch.zeros(1, 4, 32), torch.zeros(1, 4, 32), [3])


def test_partseg_model_shapes():
    torch.manual_seed(0)
    model = PartSegModel(TINY, num_categories=3, num_parts=7)
    assert model.layers == [0, 1, 2]
    out = model(torch.randn(2, 256, 3), torch.tensor([0, 2]))
    assert out.shape == (2, 7, 256)
    out.square().mean().backward()
    assert model.encoder.tokenizer.first_conv[0].weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------- fine-tuning


def synthetic_parts(n_per_class: int, seed: int, points: int = 256) -> PointSet:
    """'ball': a sphere, part 0 above / 1 below z = 0; 'rod': an x-elongated ellipsoid, part 2 for
    x > 0, 3 for x < 0. Each shape gets random axis scales."""
    rng = np.random.default_rng(seed)
    clouds, labels, segs = [], [], []
    for c in (0, 1):
        for _ in range(n_per_class):
            d = rng.normal(size=(points, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            d *= (rng.uniform(0.8, 1.2, 3) * ([1, 1, 1] if c == 0 else [2.0, 0.6, 0.5]))
            d -= d.mean(axis=0)
            clouds.append(d)
            labels.append(c)
            segs.append(np.where(d[:, 2] > 0, 0, 1) if c == 0 else np.where(d[:, 0] > 0, 2, 3))
    return PointSet(np.stack(clouds), np.array(labels), ["ball", "rod"], seg=np.stack(segs),
                    parts_of_class=[[0, 1], [2, 3]], name="synthetic-parts")


@pytest.fixture(scope="module")
def data():
    return synthetic_parts(16, seed=0), synthetic_parts(8, seed=1)


def test_normalize_clouds():
    pts = np.random.default_rng(0).normal(size=(3, 50, 3)) * 4 + 7
    out = normalize_clouds(pts)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1).max(axis=1), 1, rtol=1e-5)


@pytest.mark.slow
def test_finetune_learns_synthetic_parts(data):
    train, test = data
    # ~80 steps: enough for the BatchNorm running statistics to forget their init (the encoder's
    # trunc-normal(0.02) init makes the tokenizer's activations tiny next to the initial running var 1)
    res = finetune_partseg(TINY, None, train, test, epochs=10, batch_size=4, lr=2e-3, warmup_epochs=1, seed=0,
                           progress=False, eval_every=10)
    losses = [r["loss"] for r in res["history"]]
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    assert res["instance_miou"] > 0.7, res


def test_finetune_reports_every_epoch_and_category(data):
    train, test = data
    train, test = train.subset(np.arange(0, 32, 4)), test.subset(np.arange(0, 16, 2))
    rows = []
    res = finetune_partseg(TINY, None, train, test, epochs=3, batch_size=4, lr=2e-3, warmup_epochs=1, seed=0,
                           progress=False, log=rows.append)
    assert len(res["history"]) == 3 and rows == res["history"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert res["best_instance_miou"] >= res["instance_miou"]
    assert set(res["per_category"]) == {"ball", "rod"}
    assert res["category_miou"] == pytest.approx(np.mean(list(res["per_category"].values())))
    assert all(math.isfinite(r["instance_miou"]) for r in rows)


def test_finetune_deterministic_and_loads_state(data):
    train, test = data
    train, test = train.subset(np.arange(0, 32, 4)), test.subset(np.arange(0, 16, 4))
    kw = dict(epochs=2, batch_size=4, warmup_epochs=1, progress=False, eval_every=2)
    a = finetune_partseg(TINY, None, train, test, seed=3, **kw)
    b = finetune_partseg(TINY, None, train, test, seed=3, **kw)
    assert a["history"] == b["history"]
    assert a["history"][0]["instance_miou"] is None and a["history"][1]["instance_miou"] is not None
    torch.manual_seed(5)
    state = PointTransformerEncoder(**TINY).state_dict()
    c = finetune_partseg({"model": "point_transformer", "config": TINY}, state, train, test, seed=3, **kw)
    assert c["history"] != a["history"]


def test_short_run_leaves_the_warmup(data):
    """``--epochs 3``: the warmup is min(10, 3 / 30) epochs (0 steps at 2 steps an epoch), not a fixed 10
    epochs that would keep the whole run below a tenth of the learning rate."""
    train, test = data
    train, test = train.subset(np.arange(0, 32, 4)), test.subset(np.arange(0, 16, 4))
    res = finetune_partseg(TINY, None, train, test, epochs=3, batch_size=4, lr=1e-3, progress=False, eval_every=3)
    lrs = [r["lr"] for r in res["history"]]
    assert res["epochs"] == 3 and res["warmup_epochs"] == 0.0
    assert lrs[0] == pytest.approx(1e-3) and lrs[0] > lrs[1] > lrs[2] > 1e-4, lrs  # full lr, then cosine


@pytest.mark.slow
def test_a_30_epoch_run_warms_up_for_one_epoch(data):
    train, test = data
    train, test = train.subset(np.arange(0, 32, 4)), test.subset(np.arange(0, 16, 4))
    long = finetune_partseg(TINY, None, train, test, epochs=30, batch_size=4, lr=1e-3, progress=False, eval_every=30)
    assert long["warmup_epochs"] == 1.0 and long["history"][1]["lr"] == pytest.approx(1e-3, rel=0.01)


def test_finetune_errors(data):
    train, test = data
    no_seg = PointSet(train.points, train.labels, train.class_names)
    with pytest.raises(TrainError, match="per-point part labels"):
        finetune_partseg(TINY, None, no_seg, test, epochs=1, progress=False)
    bad = PointTransformerEncoder(**{**TINY, "width": 64}).state_dict()
    with pytest.raises(TrainError, match="do not fit") as e:
        finetune_partseg(TINY, bad, train, test, epochs=1, progress=False)
    assert "\n" not in str(e.value)
    state = PointTransformerEncoder(**TINY).state_dict()
    state.pop("pos_embed.0.weight")
    state["extra"] = torch.zeros(1)
    with pytest.raises(TrainError, match="missing pos_embed.0.weight; unexpected extra"):
        finetune_partseg(TINY, state, train, test, epochs=1, progress=False)
    with pytest.raises(TrainError, match=r"needs a point_transformer encoder \(got dgcnn_encoder\)"):
        finetune_partseg({"model": "dgcnn_encoder", "config": {}}, None, train, test, epochs=1, progress=False)
    other = PointSet(test.points, test.labels, ["ball", "cube"], seg=test.seg, parts_of_class=test.parts_of_class)
    with pytest.raises(TrainError, match="disagree"):
        finetune_partseg(TINY, None, train, other, epochs=1, progress=False)
