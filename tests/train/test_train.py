"""pcssl_train: every method trains on a real rendered store with a decreasing loss; exact resume
after SIGKILL; DDP with 2 gloo processes; export; parameter counts; one-line errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess

import pytest
import torch

from conftest import BIN, run_cli
from pcssl_train.engine.config import load_config
from pcssl_train.engine.trainer import pretrain
from pcssl_train.errors import TrainError
from pcssl_train.methods import METHODS, create_method
from pcssl_train.models import create_model

METHOD_NAMES = sorted(METHODS)


def metrics(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def n_params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_parameter_counts_match_published_point_mae():
    assert n_params(create_method("point-mae")) == pytest.approx(29.0, rel=0.02)
    assert n_params(create_model("point_transformer_cls", num_classes=40)) == pytest.approx(22.1, rel=0.02)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_trains_with_decreasing_loss(name, rendered, tmp_path):
    cfg = load_config(name, f"{name}-tiny", ("optim.epochs=12", "train.tensorboard=false"))
    result = pretrain(cfg, rendered, tmp_path / "run", progress=False)
    rows = metrics(tmp_path / "run")
    losses = [float(r["loss"]) for r in rows]
    assert result["step"] == len(rows) == 24
    assert all(map(torch.isfinite, torch.tensor(losses)))
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.8 * first, (name, losses)
    speed = json.loads((tmp_path / "run" / "throughput.json").read_text())
    assert speed["epochs_timed"] == 12 and speed["global_batch"] == 4 and speed["device"] == "cpu"
    assert speed["samples_per_s"] == sorted(speed["samples_per_s_per_epoch"][1:])[5]  # median without epoch 1
    assert speed["peak_memory_mb"] > 50


def cli_pretrain(data, run, *extra, env=None):
    cmd = [str(BIN / "pcssl-train"), "pretrain", "-c", "point-mae-tiny", "-d", str(data), "-o", str(run),
           "--no-progress", "--set", "optim.epochs=3", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, **(env or {})))


def test_resume_after_sigkill_is_exact(rendered, tmp_path):
    whole = cli_pretrain(rendered, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    killed = cli_pretrain(rendered, tmp_path / "resumed", env={"PCSSL_FAULT_KILL_AT_STEP": "5"})
    assert killed.returncode == -9, killed.stderr                      # SIGKILL in epoch 3 (2 steps per epoch)
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (2, 4)
    resumed = cli_pretrain(rendered, tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "after epoch 2 (step 4)" in resumed.stderr
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (3, 6)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    steps = [int(r["step"]) for r in metrics(tmp_path / "resumed")]
    assert steps == [1, 2, 3, 4, 5, 6]                                  # no duplicate rows after the kill
    assert [r["loss"] for r in metrics(tmp_path / "resumed")] == [r["loss"] for r in metrics(tmp_path / "whole")]
    assert list((tmp_path / "resumed" / "tensorboard").glob("events.out.tfevents.*"))


def test_ddp_two_gloo_processes(rendered, tmp_path):
    run = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "pcssl_train.cli", "pretrain",
           "-c", "point-mae-tiny", "-d", str(rendered), "-o", str(run), "--no-progress",
           "--set", "optim.epochs=2", "--set", "train.tensorboard=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["world_size"] == 2 and state["epoch"] == 2
    assert state["step"] == 4                                            # 8 objects / global batch 4, 2 epochs
    assert (run / "checkpoints" / "rng-rank1.pt").is_file()
    assert proc.stdout.count("point-mae: 2 epochs") == 1                 # rank 0 reports, once


def test_export_and_load_encoder(rendered, tmp_path):
    from pcssl_train.export import load_encoder

    cfg = load_config("serp-transformer", "serp-transformer-tiny", ("optim.epochs=1", "train.tensorboard=false"))
    pretrain(cfg, rendered, tmp_path / "run", progress=False)
    proc = run_cli("pcssl-train", "export", str(tmp_path / "run"), "--out", str(tmp_path / "enc.pt"))
    assert proc.returncode == 0, proc.stderr
    encoder = load_encoder(tmp_path / "enc.pt").eval()
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["model"]
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[f"encoder.{key}"]), key
    tokens = encoder.forward_points(torch.rand(2, 256, 3))
    assert tokens.shape == (2, 1 + 16, 64)
    cfg = {k: v for k, v in torch.load(tmp_path / "enc.pt", weights_only=False)["config"].items() if k != "cls_token"}
    classifier = create_model("point_transformer_cls", num_classes=55, **cfg)
    assert classifier.encoder.load_state_dict(encoder.state_dict()).missing_keys == []


def test_point_mae_encoder_loads_into_the_classifier(rendered, tmp_path):
    cfg = load_config("point-mae", "point-mae-tiny", ("optim.epochs=1", "train.tensorboard=false"))
    pretrain(cfg, rendered, tmp_path / "run", progress=False)
    proc = run_cli("pcssl-train", "export", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    from pcssl_train.export import load_encoder

    encoder = load_encoder(proc.stdout.strip())
    classifier = create_model("point_transformer_cls", num_classes=40, **{
        k: cfg["model"][k] for k in ("num_group", "group_size", "width", "depth", "num_heads")})
    result = classifier.encoder.load_state_dict(encoder.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["cls_pos", "cls_token"] and result.unexpected_keys == []


@pytest.mark.parametrize("args, message", [
    (["-m", "point-mae", "-d", "/nonexistent/ds"], "no such dataset folder"),
    (["-m", "pointmae3", "-d", "DATA"], "unknown method 'pointmae3'"),
    (["-c", "point-mae-tiny", "-d", "DATA", "--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
    (["-c", "point-mae-tiny", "-d", "DATA", "--set", "model.width=5"], "not divisible"),
    (["-c", "no-such-config", "-d", "DATA"], "no such file or bundled config"),
    (["-c", "point-mae-tiny", "-d", "DATA", "--set", "data.split=valid"], "split"),
])
def test_bad_input_is_one_line(args, message, rendered, tmp_path):
    args = [str(rendered) if a == "DATA" else a for a in args]
    proc = run_cli("pcssl-train", "pretrain", *args, "-o", str(tmp_path / "run"), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_dataset_without_needed_arrays(rendered, tmp_path):
    broken = tmp_path / "ds"
    shutil.copytree(rendered, broken)
    for shard in (broken / "shards").glob("*/fused_points"):
        shutil.rmtree(shard)
    proc = run_cli("pcssl-train", "pretrain", "-c", "point-mae-tiny", "-d", str(broken), "-o", str(tmp_path / "r"))
    assert proc.returncode == 2 and "fused_points" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_changed_config_does_not_resume_silently(rendered, tmp_path):
    cfg = load_config("point-mae", "point-mae-tiny", ("optim.epochs=1", "train.tensorboard=false"))
    pretrain(cfg, rendered, tmp_path / "run", progress=False)
    other = load_config("point-mae", "point-mae-tiny", ("optim.epochs=1", "optim.lr=0.01", "train.tensorboard=false"))
    with pytest.raises(TrainError, match="different config"):
        pretrain(other, rendered, tmp_path / "run", progress=False)


def test_help_has_examples():
    for cmd in (["--help"], ["pretrain", "--help"], ["export", "--help"], ["env", "--help"]):
        proc = run_cli("pcssl-train", *cmd)
        assert proc.returncode == 0 and "Example" in proc.stdout, cmd


# --- registries ---------------------------------------------------------------------------------
def test_each_method_registers_itself_in_its_own_file():
    import pcssl_train.methods as methods

    for name, cls in METHODS.items():
        assert cls.name == name and cls.__module__.startswith("pcssl_train.methods.")
        assert cls.__module__ != methods.__name__
    assert METHODS.lookup("Point_MAE") is METHODS["point-mae"]
    with pytest.raises(TrainError, match="unknown method 'nope'; known: crossalignnet, mm-point"):
        create_method("nope")


def test_every_method_has_its_bundled_configs_and_every_config_a_method():
    from pcssl_train.engine.config import bundled_configs, read_yaml
    from pcssl_train.configs import CONFIG_DIR

    expected = sorted([*METHODS, *(f"{m}-tiny" for m in METHODS)])
    assert bundled_configs() == expected
    for stem in bundled_configs():
        assert read_yaml(CONFIG_DIR / f"{stem}.yaml")["method"] == stem.removesuffix("-tiny")


def test_method_defaults_are_written_only_in_the_bundled_config():
    """The constructors declare no defaults; each argument is a key of the bundled ``model`` section
    and each key there an argument, so create_method(name) builds the published model."""
    import inspect

    from pcssl_train.configs import model_defaults
    from pcssl_train.models.registry import accepted_kwargs

    for name, cls in METHODS.items():
        for klass in cls.__mro__[:cls.__mro__.index(torch.nn.Module)]:
            if "__init__" in klass.__dict__:
                params = inspect.signature(klass.__init__).parameters.values()
                assert not [p.name for p in params if p.default is not p.empty], klass
        assert sorted(accepted_kwargs(cls)) == sorted(model_defaults(name)), name


def test_docs_and_cli_list_the_registered_methods():
    from pathlib import Path

    from click.testing import CliRunner

    from pcssl_train.cli import cli

    text = (Path(__file__).resolve().parents[2] / "docs" / "TRAINING.md").read_text()
    table = text.split("## Methods\n", 1)[1].strip().split("\n\n")[0]   # the table under "## Methods"
    assert [row.split("`")[1] for row in table.splitlines()[2:]] == list(METHODS)
    names = list(METHODS)
    pretrain_help = " ".join(CliRunner().invoke(cli, ["pretrain", "--help"]).output.split())
    assert f"{', '.join(names[:-1])} or {names[-1]} (or from --config)" in pretrain_help
    benchmark_help = "".join(CliRunner().invoke(cli, ["benchmark", "--help"]).output.split())
    assert f"[default:{','.join(names)}]" in benchmark_help


def test_weight_decay_groups():
    from pcssl_train.engine.trainer import param_groups

    method = create_method("vasp", num_group=8, group_size=8, width=32, depth=1, num_heads=2, decoder_depth=1,
                           decoder_heads=2, num_codes=16)
    decay, no_decay = param_groups(method, 0.05)
    names = {id(p): n for n, p in method.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"quantizer.codebook.weight", "encoder.cls_token", "encoder.cls_pos", "decoder_cls_pos"} <= skipped
    assert all(p.ndim >= 2 for p in decay["params"]) and "encoder.fuse.weight" not in skipped
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(method.parameters()))


def test_loader_workers_do_not_change_training(rendered, tmp_path):
    """Samples depend on (seed, epoch, index) only, so 2 DataLoader workers train exactly as 0."""
    losses = []
    for workers in (0, 2):
        cfg = load_config("serp-pointnet", "serp-pointnet-tiny",
                          ("optim.epochs=2", "train.tensorboard=false", f"data.workers={workers}"))
        pretrain(cfg, rendered, tmp_path / f"w{workers}", progress=False)
        losses.append([r["loss"] for r in metrics(tmp_path / f"w{workers}")])
    assert losses[0] == losses[1] and len(losses[0]) == 4
