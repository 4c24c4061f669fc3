"""CrossAlignNet on real rendered shards: what the encoders and decoders receive follows the aligned
masks; padded/grouped attention equals separate sequences; resized views keep the projection;
every ablation switch trains with a decreasing loss; parameter counts against the paper."""

from __future__ import annotations

import csv

import pytest
import torch

from pcssl_train.data import CmaDataset
from pcssl_train.engine.config import load_config
from pcssl_train.engine.trainer import pretrain
from pcssl_train.methods import create_method
from pcssl_train.methods.mask_alignment import resize_view
from pcssl_train.models import create_model
from pcssl_train.models.blocks import TransformerStack
from pcssl_train.ops import gather_points, project

TINY = load_config("crossalignnet", "crossalignnet-tiny")["model"]


def n_params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@pytest.fixture(scope="module")
def batch(rendered):
    ds = CmaDataset(rendered, kind="view", split="all", num_points=256, sampling="fps", view_choice="max-points")
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def test_parameter_counts_against_the_paper():
    # Table 9: 57.69M pretraining + 22.09M fine-tuning. Ours: 21.83M point encoder + 21.65M ViT-S/16
    # + 7.14M GSA decoder + 0.49M GSA heads + 7.15M LMR decoder + 0.04M LMR head (docs/TRAINING.md).
    assert n_params(create_method("crossalignnet")) == pytest.approx(57.69, rel=0.015)
    assert n_params(create_model("point_transformer_cls", num_classes=40)) == pytest.approx(22.09, rel=0.005)


def test_key_padding_equals_separate_sequences():
    torch.manual_seed(0)
    stack = TransformerStack(32, 2, 4).eval()
    x, pos = torch.randn(3, 7, 32), torch.randn(3, 7, 32)
    counts = [7, 4, 1]
    valid = torch.arange(7)[None] < torch.tensor(counts)[:, None]
    padded = stack(x, pos, mask=valid)
    for i, n in enumerate(counts):
        alone = stack(x[i:i + 1, :n], pos[i:i + 1, :n])
        torch.testing.assert_close(padded[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_image_groups_equal_two_separate_sequences():
    torch.manual_seed(0)
    enc = create_model("image_transformer", image_size=32, patch_size=8, width=32, depth=2, num_heads=4).eval()
    images = torch.rand(2, 3, 32, 32)
    groups = torch.rand(2, 16) < 0.5
    out = enc(images, groups=groups)
    tokens = enc.patch_embed(images).flatten(2).transpose(1, 2)
    pos = enc.pos_embed.expand(2, -1, -1)
    for i in range(2):
        for g in (True, False):
            sel = groups[i] == g
            alone = enc.transformer(tokens[i:i + 1, sel], pos[i:i + 1, sel])
            torch.testing.assert_close(out[i, sel], alone[0], atol=1e-5, rtol=1e-5)


def test_visible_encoding_with_equal_counts_matches_the_point_mae_path(batch):
    torch.manual_seed(0)
    method = create_method("crossalignnet", **TINY).eval()
    patches = method.encoder.group(batch["points"])
    visible = torch.zeros(patches.center.shape[:2], dtype=torch.bool)
    for i in range(len(visible)):
        visible[i, torch.randperm(visible.shape[1])[:6]] = True
    tokens, index, valid = method.encoder.forward_visible(patches.neighborhood, patches.center, visible)
    assert valid.all() and torch.equal(visible.gather(1, index), valid)
    torch.testing.assert_close(tokens, method.encoder(patches.neighborhood, patches.center, visible=visible))


def test_resized_view_keeps_the_projection(batch):
    patches_center = gather_points(batch["points"], torch.arange(0, 256, 16).expand(len(batch["points"]), -1))
    stored = gather_points(batch["pixels"].float(), torch.arange(0, 256, 16).expand(len(batch["points"]), -1))
    rgb, K = resize_view(batch["rgb"], batch["K"], 32)
    assert rgb.shape[-2:] == (32, 32)
    pix = project(patches_center, K, batch["world_to_cam"])[0]
    torch.testing.assert_close(pix, (stored + 0.5) * 0.5 - 0.5, atol=1e-3, rtol=0)


@pytest.mark.parametrize("strategy", ["correspondence", "complementary", "random"])
def test_model_inputs_follow_the_aligned_masks(strategy, batch):
    """Re-create the masks of a training step (same torch seed) and check what each module receives."""
    method = create_method("crossalignnet", **dict(TINY, image_mask=strategy))
    image, K = method.view_inputs(batch)
    torch.manual_seed(1)
    m = method.align(batch["points"], K, batch["world_to_cam"])
    assert not m.fallback.any()
    # the alignment property: where each point patch's center lands
    pix = project(m.patches.center, K, batch["world_to_cam"])[0]
    cell = (torch.floor(pix[..., 0] + 0.5).long() // 8) * 4 + torch.floor(pix[..., 1] + 0.5).long() // 8
    lands_masked = m.image_mask.gather(1, cell)
    if strategy == "correspondence":
        assert torch.equal(lands_masked, m.point_mask)
    elif strategy == "complementary":
        assert torch.equal(lands_masked, ~m.point_mask)
    assert (m.point_mask.sum(1) >= int(0.6 * 16)).all()
    seen = {}

    def keep(key, value):                                              # a hook that returns None changes nothing
        seen[key] = value

    hooks = [
        method.encoder.tokenizer.register_forward_hook(lambda mod, a, o: keep("tokenizer", tuple(a[0].shape[:2]))),
        method.encoder.transformer.register_forward_hook(lambda mod, a, kw, o: keep("encoded", int(kw["mask"].sum())),
                                                         with_kwargs=True),
        method.image_encoder.register_forward_hook(lambda mod, a, kw, o: keep("groups", kw["groups"]),
                                                   with_kwargs=True),
        method.lmr_decoder.register_forward_hook(lambda mod, a, o: keep("context_mask", a[3])),
        method.lmr_head.register_forward_hook(lambda mod, a, o: keep("reconstructed", a[0].shape[1])),
    ]
    torch.manual_seed(1)
    out = method(batch)
    for h in hooks:
        h.remove()
    assert seen["tokenizer"] == tuple(m.point_mask.shape)              # tokenizer (its BatchNorm): every patch
    assert seen["encoded"] == int((~m.point_mask).sum())               # point encoder: the visible patches only
    assert torch.equal(seen["groups"], m.image_mask)                   # image encoder: visible | masked sequences
    assert torch.equal(seen["context_mask"], ~m.image_mask)            # LMR keys/values: visible image tokens
    assert seen["reconstructed"] == int(m.point_mask.sum())            # LMR: every masked point patch
    assert out["masked_points"] == pytest.approx(m.point_mask.float().mean().item())
    assert out["masked_image"] == pytest.approx(m.image_mask.float().mean().item())


def test_fallback_when_alignment_masks_every_point_patch():
    method = create_method("crossalignnet", **TINY)
    # all 16 patch centers project into the same image patch: the shared rule would mask them all
    K = torch.tensor([[[10.0, 0, 15.5], [0, 10.0, 15.5], [0, 0, 1]]])
    w2c = torch.eye(4)[None]
    cloud = torch.randn(1, 256, 3) * 0.01 + torch.tensor([0.0, 0.0, 2.0])
    torch.manual_seed(0)
    m = method.align(cloud, K, w2c)
    assert m.fallback.all()
    assert int(m.point_mask.sum()) == int(0.6 * 16)                    # the plain random mask
    assert not m.image_mask.all()                                      # LMR keeps a visible image token


def losses(run) -> list[float]:
    with open(run / "metrics.csv", newline="") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


@pytest.mark.parametrize("overrides", [
    ("model.gsa=false",),                        # LMR alone (Table 8, row 2)
    ("model.lmr=false",),                        # GSA alone (Table 8, row 1)
    ("model.image_mask=random",),                # Table 7
    ("model.image_mask=correspondence",),
    ("data.view_choice=random",),
], ids=lambda o: o[0])
def test_ablation_switch_trains_with_decreasing_loss(overrides, rendered, tmp_path):
    cfg = load_config("crossalignnet", "crossalignnet-tiny", overrides + ("optim.epochs=12", "train.tensorboard=false"))
    result = pretrain(cfg, rendered, tmp_path / "run", progress=False)
    values = losses(tmp_path / "run")
    assert result["step"] == len(values) == 24
    assert sum(values[-4:]) < 0.8 * sum(values[:4]), values
    if "model.gsa=false" in overrides:
        assert "gsa" not in result and "lmr" in result
    if "model.lmr=false" in overrides:
        assert "lmr" not in result and "gsa" in result


def test_only_the_point_encoder_is_exported_and_it_fine_tunes(rendered, tmp_path):
    from pcssl_train.export import export_encoder, load_encoder

    cfg = load_config("crossalignnet", "crossalignnet-tiny", ("optim.epochs=1", "train.tensorboard=false"))
    pretrain(cfg, rendered, tmp_path / "run", progress=False)
    encoder = load_encoder(export_encoder(tmp_path / "run"))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert set(encoder.state_dict()) == {k[len("encoder."):] for k in state if k.startswith("encoder.")}
    classifier = create_model("point_transformer_cls", num_classes=40, **{
        k: cfg["model"][k] for k in ("num_group", "group_size", "width", "depth", "num_heads")})
    result = classifier.encoder.load_state_dict(encoder.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["cls_pos", "cls_token"] and result.unexpected_keys == []


def test_bad_model_settings_are_one_line_errors():
    from pcssl_train.errors import TrainError

    with pytest.raises(TrainError, match="image_mask must be one of"):
        create_method("crossalignnet", image_mask="checkerboard")
    with pytest.raises(TrainError, match="both off"):
        create_method("crossalignnet", gsa=False, lmr=False)
