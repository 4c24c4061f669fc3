"""Pretrained point encoders for downstream use.

``pcssl-train export SOURCE`` writes one file: this package's encoder export (``--format pcssl``:
registry name + config + weights, ``load_encoder(path)`` rebuilds the module) or an official
Point-MAE checkpoint (``--format point-mae``) that the official code fine-tunes unchanged. SOURCE is a
run folder, a run checkpoint, an encoder export or an official Point-MAE checkpoint; every file is
read with ``weights_only=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cma_builder.errors import CmaError
from cma_builder.paths import check_name

from . import official
from .engine import checkpoint as ckpt
from .engine.paths import check_output_dir, check_output_file
from .errors import TrainError
from .methods import create_method

FORMAT = "pcssl-encoder/1"
FORMATS = ("pcssl", "point-mae")


def run_checkpoint(run: Path, which: str = "last") -> Path:
    which = str(which).strip()
    if which != "last" and not (which.isdigit() and int(which) >= 1):
        raise TrainError(f"--epoch {which}: expected 'last' or an epoch number (>= 1) kept by train.keep_every")
    path = run / "checkpoints" / ("last.pt" if which == "last" else f"epoch-{int(which):04d}.pt")
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint (is {run} a pcssl-train run that finished an epoch?)")
    return path


def _source_file(source: Path, which: str) -> Path:
    if source.is_dir():
        return run_checkpoint(source, which)
    if not source.is_file():
        raise TrainError(f"{source}: no such run folder or checkpoint file")
    return source


@dataclass
class Pretrained:
    """What a weights file holds, whatever its format: the point encoder (registry ``name``, ``config``,
    ``weights``), the whole pretraining ``method`` of a run checkpoint, and ``official`` for official
    Point-MAE files (their whole model is ``official.ours()``)."""

    name: str
    config: dict
    weights: dict
    label: str
    epoch: int = 0
    step: int = 0
    method: torch.nn.Module | None = None
    model_config: dict | None = None          # a run checkpoint's ``model`` section
    official: official.OfficialCheckpoint | None = None


def read_pretrained(path: Path) -> Pretrained:
    """Read a run checkpoint, an encoder export or an official Point-MAE checkpoint (``weights_only``),
    strictly: a file whose keys do not fit its model is a one-line error."""
    data = ckpt.load_untrusted(path)
    if isinstance(data, dict) and data.get("format") == "pcssl-checkpoint/1":
        cfg = data["config"]
        method = create_method(cfg["method"], **cfg["model"])
        official.load_strict(method, data["model"], str(path))
        name, enc_cfg, weights = method.encoder_export()
        return Pretrained(name, dict(enc_cfg), {k: v.clone() for k, v in weights.items()}, cfg["method"],
                          int(data["epoch"]), int(data["step"]), method, dict(cfg["model"]))
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return Pretrained(data["model"], dict(data["config"]), data["state_dict"], data.get("method", ""),
                          int(data.get("epoch", 0)), int(data.get("step", 0)))
    found = official.from_data(data, str(path))
    if found is None:
        raise TrainError(f"{path}: neither a pcssl-train encoder export, a run checkpoint nor an official "
                         f"Point-MAE checkpoint")
    found.check()
    return Pretrained("point_transformer", found.encoder_config(), found.encoder_state(),
                      f"point-mae-official-{found.kind}", found.epoch, official=found)


def _point_mae_state(got: Pretrained, source: str) -> dict:
    """Official keys: the whole ``Point_MAE`` of a point-mae method, an official file's own model, or
    the encoder alone as ``MAE_encoder.*`` (what the official fine-tuning reads)."""
    if got.official is not None and (got.official.kind == "finetune" or "mask_token" in got.official.state):
        return got.official.state                      # the file's own model, keys normalized
    if got.method is not None and got.method.name == "point-mae":
        return official.pretrain_state(got.method)
    cfg = got.config
    if (got.name != "point_transformer" or cfg.get("fusion", "add") != "add"
            or cfg.get("patch_norm", "none") != "none" or cfg.get("cls_token")):
        what = got.name if got.name != "point_transformer" else "a point transformer with " + ", ".join(
            f"{k}={cfg[k]}" for k in ("fusion", "patch_norm", "cls_token") if k in cfg)
        raise TrainError(f"{source}: the encoder ({what}) has no official Point-MAE equivalent; "
                         f"export it with --format pcssl")
    return official.encoder_as_pretrain_state(got.weights)


def export_encoder(source: str | os.PathLike, out: str | os.PathLike | None = None, which: str = "last",
                   fmt: str = "pcssl") -> Path:
    """Write the point encoder of ``source`` as ``fmt`` (see the module docstring); returns the path."""
    if fmt not in FORMATS:
        raise TrainError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    source = Path(source)
    path = _source_file(source, which)
    # default output: the run folder for a run (or its checkpoint); the current folder for any other
    # file, never the folder of someone else's checkpoint
    if source.is_dir():
        folder = source
    elif path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        folder = path.parent.parent
    else:
        folder = Path.cwd()
    if out is not None and Path(out).resolve() == path.resolve():
        raise TrainError(f"{out}: is the file being exported; choose another --out")
    if out is not None:   # before the (possibly large) file is read
        check_output_file(out, "--out", example="encoder.pt")
    else:
        check_output_dir(folder, None)
    got = read_pretrained(path)
    if out is None and got.label:   # the default name holds the file's own method label, read from the file
        try:
            check_name(got.label, f"{path}: its method")
        except CmaError as exc:
            raise TrainError(f"{exc}; pass --out FILE") from None
    if fmt == "point-mae":
        return official.write(_point_mae_state(got, str(path)),
                              out or folder / f"{got.label}-epoch{got.epoch}.point-mae.pth", got.epoch)
    out = Path(out) if out else folder / f"encoder-{got.label}-epoch{got.epoch}.pt"
    ckpt.save_atomic({"format": FORMAT, "model": got.name, "config": got.config, "state_dict": got.weights,
                      "method": got.label, "epoch": got.epoch, "step": got.step, "torch": str(torch.__version__)},
                     out)
    return out


def load_encoder(path: str | os.PathLike, map_location="cpu") -> torch.nn.Module:
    """The point encoder of an export, a run folder / checkpoint or an official Point-MAE checkpoint,
    as a module in eval mode (``create_model(name, **config)`` + its weights)."""
    from .eval.features import load_spec

    return load_spec(path).build().to(map_location)
