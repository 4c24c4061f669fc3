"""Official Point-MAE parity and checkpoints: the fixture computed by the official code is reproduced
from its checkpoints through the public loaders; exports load back; loading is strict and safe."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import BIN, REPO
from pcssl_train import official
from pcssl_train.engine.checkpoint import load_untrusted
from pcssl_train.engine.config import load_config
from pcssl_train.engine.initialize import initialize
from pcssl_train.engine.trainer import pretrain
from pcssl_train.errors import TrainError
from pcssl_train.eval.features import load_spec
from pcssl_train.export import export_encoder, load_encoder
from pcssl_train.methods import create_method
from pcssl_train.models.blocks import DropPath

FIXTURE = Path(os.environ.get("CMA_POINT_MAE_FIXTURE", REPO.parent / "shared" / "fixtures" / "point-mae-official"))
needs_fixture = pytest.mark.skipif(not (FIXTURE / "expected.json").is_file(),
                                   reason=f"official Point-MAE fixture not found at {FIXTURE}")
# The fixture's model size (expected.json "config"), as a point-mae config.
FIXTURE_MODEL = ("model.num_group=64", "model.group_size=32", "model.width=96", "model.depth=2", "model.num_heads=6",
                 "model.drop_path=0.1", "model.decoder_depth=1", "model.decoder_heads=6")


@pytest.fixture(scope="module")
def expected():
    return json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def inputs():
    return torch.load(FIXTURE / "inputs.pt", weights_only=True)


def tiny_point_mae(width: int = 64):
    """A point-mae method of the tiny config's size (16 patches of 16 points, 2 + 1 blocks)."""
    return create_method("point-mae", num_group=16, group_size=16, width=width, depth=2, num_heads=4, decoder_depth=1,
                         decoder_heads=4)


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``pcssl-train ARGS`` as a user would."""
    return subprocess.run([str(BIN / "pcssl-train"), *args], capture_output=True, text=True, timeout=600)


def official_keys(expected, model: str) -> set[str]:
    return {row["key"] for row in expected["state_dict_keys"][model]}


@needs_fixture
def test_fixture_losses_and_centers_are_reproduced(expected, inputs):
    method = official.read(FIXTURE / "pretrain.pth").method()
    assert sum(p.numel() for p in method.parameters()) == expected["param_counts"]["pretrain_Point_MAE"]
    patches = method.encoder.group(inputs["points"])
    assert torch.equal(patches.center, torch.load(FIXTURE / "centers.pt", weights_only=True))
    assert torch.equal(patches.neighborhood, torch.load(FIXTURE / "neighborhood.pt", weights_only=True))
    with torch.no_grad():
        loss = method.eval().masked_loss(patches, inputs["mask"]).item()
    assert loss == pytest.approx(expected["losses"]["eval"], rel=1e-5)
    method.train()
    for module in method.modules():       # the fixture's train-mode loss has drop path off
        if isinstance(module, DropPath):
            module.p = 0.0
    loss = method.masked_loss(patches, inputs["mask"])
    assert loss.item() == pytest.approx(expected["losses"]["train_no_droppath"], rel=1e-5)
    loss.backward()
    grads = {official.rename({k: 0}, official.PRETRAIN_KEYS, reverse=True).popitem()[0]: p.grad.norm().item()
             for k, p in method.named_parameters()}
    assert set(grads) == set(expected["grad_norms_all"])
    for key, norm in expected["grad_norms_all"].items():
        if norm < 1e-5:   # a bias right before BatchNorm: mathematically 0, its norm is rounding noise
            assert grads[key] < 1e-5, key
        else:
            assert grads[key] == pytest.approx(norm, rel=1e-4), key


@needs_fixture
def test_fixture_logits_are_reproduced(expected, inputs):
    classifier = official.read(FIXTURE / "finetune.pth").classifier().eval()
    assert sum(p.numel() for p in classifier.parameters()) == expected["param_counts"]["finetune_PointTransformer"]
    with torch.no_grad():
        logits = classifier(inputs["points"])
    torch.testing.assert_close(logits, torch.load(FIXTURE / "logits.pt", weights_only=True), rtol=1e-5, atol=1e-6)


@needs_fixture
def test_official_checkpoints_load_as_encoders(inputs):
    method = official.read(FIXTURE / "pretrain.pth").method().eval()
    for path, through in ((FIXTURE / "pretrain.pth", method.encoder),
                          (FIXTURE / "finetune.pth", official.read(FIXTURE / "finetune.pth").classifier().encoder)):
        encoder = load_encoder(path)
        spec = load_spec(path)
        assert spec.name == "point_transformer" and spec.config["width"] == 96 and spec.config["depth"] == 2
        for key, value in encoder.state_dict().items():
            assert torch.equal(value, through.state_dict()[key]), key
    # the fine-tuning encoder was loaded from pretrain.pth by the official loader: same weights
    fine = load_encoder(FIXTURE / "finetune.pth").state_dict()
    for key, value in load_encoder(FIXTURE / "pretrain.pth").state_dict().items():
        assert torch.equal(value, fine[key]), key


@pytest.fixture(scope="module")
def fixture_size_run(rendered, tmp_path_factory):
    """A point-mae run of the fixture's model size, one epoch on the rendered store."""
    run = tmp_path_factory.mktemp("official") / "run"
    cfg = load_config("point-mae", "point-mae-tiny", FIXTURE_MODEL + ("data.num_points=1024", "optim.epochs=1",
                                                                      "train.tensorboard=false"))
    pretrain(cfg, rendered, run, progress=False)
    return run


def test_point_mae_export_round_trips(fixture_size_run, tmp_path):
    out = tmp_path / "ours.pth"
    proc = cli("export", str(fixture_size_run), "--format", "point-mae", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    raw = torch.load(out, weights_only=True)
    assert set(raw) >= {"base_model", "epoch"} and all(k.startswith("module.") for k in raw["base_model"])
    state = torch.load(fixture_size_run / "checkpoints" / "last.pt", weights_only=False)["model"]
    back = official.read(out).method().state_dict()
    assert set(back) == set(state)
    for key in state:
        assert torch.equal(back[key], state[key]), key
    if (FIXTURE / "expected.json").is_file():
        keys = official_keys(json.loads((FIXTURE / "expected.json").read_text()), "pretrain")
        assert {k[len("module."):] for k in raw["base_model"]} == keys
        shapes = {r["key"]: r["shape"] for r in json.loads((FIXTURE / "expected.json").read_text())
                  ["state_dict_keys"]["pretrain"]}
        assert all(list(v.shape) == shapes[k[len("module."):]] for k, v in raw["base_model"].items())


@needs_fixture
def test_official_checkpoint_exports_to_both_formats(tmp_path, expected):
    ours = export_encoder(FIXTURE / "pretrain.pth", tmp_path / "enc.pt")
    again = export_encoder(ours, tmp_path / "again.pth", fmt="point-mae")
    keys = {k[len("module."):] for k in torch.load(again, weights_only=True)["base_model"]}
    assert keys == {k for k in official_keys(expected, "pretrain") if k.startswith("MAE_encoder.")}
    a, b = load_encoder(FIXTURE / "pretrain.pth").state_dict(), load_encoder(again).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    whole = export_encoder(FIXTURE / "pretrain.pth", tmp_path / "whole.pth", fmt="point-mae")
    original = official.read(FIXTURE / "pretrain.pth").state
    copied = official.read(whole).state
    assert set(copied) == set(original) and all(torch.equal(copied[k], original[k]) for k in original)


def test_loading_is_strict(tmp_path):
    method = tiny_point_mae()
    state = official.pretrain_state(method)
    official.write(dict(state, **{"MAE_encoder.extra.weight": torch.zeros(2)}), tmp_path / "extra.pth")
    with pytest.raises(TrainError, match="unexpected key 'MAE_encoder.extra.weight'"):
        official.read(tmp_path / "extra.pth").method(num_group=16, num_heads=4)
    official.write({k: v for k, v in state.items() if k != "MAE_decoder.norm.bias"}, tmp_path / "missing.pth")
    with pytest.raises(TrainError, match="missing key 'decoder.norm.bias'"):
        official.read(tmp_path / "missing.pth").method(num_group=16, num_heads=4)
    official.write(dict(state, mask_token=torch.zeros(1, 1, 32)), tmp_path / "shape.pth")
    with pytest.raises(TrainError, match="mask_token"):
        official.read(tmp_path / "shape.pth").method(num_group=16, num_heads=4)
    with pytest.raises(TrainError, match="unexpected key"):
        load_spec(tmp_path / "extra.pth")


def test_crossalignnet_point_branch_starts_from_point_mae_weights(rendered, tmp_path):
    src = tiny_point_mae()
    path = official.write(official.pretrain_state(src), tmp_path / "pretrain.pth")
    cfg = load_config("crossalignnet", "crossalignnet-tiny", ())
    method = create_method("crossalignnet", **cfg["model"])
    image_before = {k: v.clone() for k, v in method.image_encoder.state_dict().items()}
    said = initialize(method, path, cfg["model"])
    assert "point encoder" in said
    for key, value in src.encoder.state_dict().items():
        assert torch.equal(method.encoder.state_dict()[key], value), key
    assert all(torch.equal(v, method.image_encoder.state_dict()[k]) for k, v in image_before.items())
    # the CLI: the run starts from those weights and trains
    run = tmp_path / "run"
    proc = cli("pretrain", "-c", "crossalignnet-tiny", "-d", str(rendered), "-o", str(run), "--no-progress",
               "--init", str(path), "--set", "optim.epochs=1", "--set", "train.tensorboard=false")
    assert proc.returncode == 0, proc.stderr
    assert "initialized the point encoder of crossalignnet" in proc.stderr
    assert load_config(None, str(run / "config.yaml"))["init"] == str(path.resolve())
    # a different size is refused in one line, before the run folder is made
    wide = tiny_point_mae(width=32)
    official.write(official.pretrain_state(wide), tmp_path / "wide.pth")
    proc = cli("pretrain", "-c", "crossalignnet-tiny", "-d", str(rendered), "-o", str(tmp_path / "run2"),
               "--no-progress", "--init", str(tmp_path / "wide.pth"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "width=32" in proc.stderr and not (tmp_path / "run2").exists()


def test_point_mae_starts_from_official_weights(rendered, tmp_path):
    src = tiny_point_mae()
    path = official.write(official.pretrain_state(src), tmp_path / "pretrain.pth")
    cfg = load_config("point-mae", "point-mae-tiny", ())
    method = create_method("point-mae", **cfg["model"])
    assert "whole point-mae model" in initialize(method, path, cfg["model"])
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in method.state_dict().items())


class _Marker:
    """Unpickling this writes a marker file: what a crafted checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_crafted_checkpoints_are_refused_and_run_nothing(rendered, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    method = tiny_point_mae()
    torch.save({"base_model": {"module." + k: v for k, v in official.pretrain_state(method).items()},
                "epoch": 0, "metrics": _Marker(marker)}, evil)
    assert not marker.exists()
    commands = {
        "eval": ["eval", str(evil), "-p", "svm", "-b", "cma", "-r", str(rendered), "--no-progress"],
        "export": ["export", str(evil), "--out", str(tmp_path / "out.pt")],
        "pretrain --init": ["pretrain", "-c", "point-mae-tiny", "-d", str(rendered), "-o", str(tmp_path / "run"),
                            "--no-progress", "--init", str(evil)],
    }
    for what, args in commands.items():
        proc = cli(*args)
        assert proc.returncode == 2, (what, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused" in lines[0] and "arbitrary unpickling" in lines[0], (what, proc.stderr)
        assert "pathlib" in lines[0] or "Path" in lines[0], lines[0]          # names what it asked for
        assert not marker.exists(), what
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "run").exists()
    with pytest.raises(TrainError, match="refused"):
        load_untrusted(evil)
    assert not marker.exists()


def test_run_checkpoints_and_exports_load_without_unpickling(fixture_size_run, tmp_path):
    """Our own files need no arbitrary unpickling either (their RNG state is numbers and arrays)."""
    data = load_untrusted(fixture_size_run / "checkpoints" / "last.pt")
    assert data["format"] == "pcssl-checkpoint/1" and data["rng"]["numpy"][1].dtype.name == "uint32"
    out = export_encoder(fixture_size_run, tmp_path / "enc.pt")
    assert load_untrusted(out)["format"] == "pcssl-encoder/1"


def test_point_mae_decoder_starts_xavier_uniform():
    method = create_method("point-mae")
    fc1 = method.decoder.blocks[0].mlp.fc1.weight
    bound = (6 / (fc1.shape[0] + fc1.shape[1])) ** 0.5
    assert fc1.abs().max() <= bound and fc1.abs().max() > 0.99 * bound
    assert fc1.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.02)
    assert torch.count_nonzero(method.decoder.blocks[0].attn.proj.bias) == 0
    enc = method.encoder.transformer.blocks[0].mlp.fc1.weight       # the encoder stays trunc-normal(0.02)
    assert enc.std().item() == pytest.approx(0.02, rel=0.05)


def test_tokenizer_batchnorm_sees_every_patch():
    """In training mode the tokenizer's BatchNorm statistics come from all G patches, masked ones too."""
    torch.manual_seed(0)
    method = create_method("point-mae", num_group=16, group_size=16, width=64, depth=1, num_heads=4, decoder_depth=1,
                           decoder_heads=4).train()
    patches = method.encoder.group(torch.rand(2, 256, 3))
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :10] = True
    bn = method.encoder.tokenizer.first_conv[1]
    method.masked_loss(patches, mask)
    x = method.encoder.tokenizer.first_conv[0](patches.neighborhood.reshape(32, 16, 3).transpose(1, 2))
    expected = 0.9 * torch.zeros(128) + 0.1 * x.mean(dim=(0, 2))
    torch.testing.assert_close(bn.running_mean, expected.detach(), rtol=1e-5, atol=1e-7)
