"""Pretrained point encoders for downstream use.

``pcssl-train export SOURCE`` writes one file: this package's encoder export (``--format pcssl``:
registry name + config + weights, ``load_encoder(path)`` rebuilds the module) or an official
Point-MAE checkpoint (``--format point-mae``) that the official code fine-tunes unchanged. SOURCE is a
run folder, a run checkpoint, an encoder export or an official Point-MAE checkpoint; every file is
read with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import official
from .engine import checkpoint as ckpt
from .errors import TrainError
from .methods import create_method

FORMAT = "pcssl-encoder/1"
FORMATS = ("pcssl", "point-mae")


def run_checkpoint(run: Path, which: str = "last") -> Path:
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


def _point_mae_state(name: str, cfg: dict, weights: dict, method=None, source: str = "") -> dict:
    """Official ``Point_MAE`` keys: the whole model for a point-mae method, else the encoder alone."""
    if method is not None and method.name == "point-mae":
        return official.pretrain_state(method)
    if (name != "point_transformer" or cfg.get("fusion", "add") != "add" or cfg.get("patch_norm", "none") != "none"
            or cfg.get("cls_token")):
        what = name if name != "point_transformer" else "a point transformer with " + ", ".join(
            f"{k}={cfg[k]}" for k in ("fusion", "patch_norm", "cls_token") if k in cfg)
        raise TrainError(f"{source}: the encoder ({what}) has no official Point-MAE equivalent; "
                         f"export it with --format pcssl")
    return official.encoder_as_pretrain_state(weights)


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
    data = ckpt.load_untrusted(path)
    method = None
    if isinstance(data, dict) and data.get("format") == "pcssl-checkpoint/1":
        cfg = data["config"]
        method = create_method(cfg["method"], **cfg["model"])
        official.load_strict(method, data["model"], str(path))
        name, enc_cfg, weights = method.encoder_export()
        label, epoch, step = cfg["method"], int(data["epoch"]), int(data["step"])
    elif isinstance(data, dict) and data.get("format") == FORMAT:
        name, enc_cfg, weights = data["model"], dict(data["config"]), data["state_dict"]
        label, epoch, step = data.get("method", ""), int(data.get("epoch", 0)), int(data.get("step", 0))
    elif (found := official.from_data(data, str(path))) is not None:
        if found.kind == "pretrain" and "mask_token" in found.state:
            method = found.method()
        elif found.kind == "finetune":
            found.classifier()                         # strict check of every key
        name, enc_cfg, weights = "point_transformer", found.encoder_config(), found.encoder_state()
        label, epoch, step = f"point-mae-official-{found.kind}", found.epoch, 0
        if fmt == "point-mae" and found.kind == "finetune":
            return official.write(found.state, out or folder / f"{path.stem}-point-mae.pth", epoch)
    else:
        raise TrainError(f"{path}: neither a pcssl-train run checkpoint, an encoder export nor an official "
                         f"Point-MAE checkpoint")
    if fmt == "point-mae":
        state = _point_mae_state(name, enc_cfg, weights, method, str(path))
        return official.write(state, out or folder / f"{label}-epoch{epoch}.point-mae.pth", epoch)
    out = Path(out) if out else folder / f"encoder-{label}-epoch{epoch}.pt"
    ckpt.save_atomic({"format": FORMAT, "model": name, "config": enc_cfg, "state_dict": weights,
                      "method": label, "epoch": epoch, "step": step, "torch": str(torch.__version__)}, out)
    return out


def load_encoder(path: str | os.PathLike, map_location="cpu") -> torch.nn.Module:
    """The point encoder of an export, a run folder / checkpoint or an official Point-MAE checkpoint,
    as a module in eval mode (``create_model(name, **config)`` + its weights)."""
    from .eval.features import load_spec

    return load_spec(path).build().to(map_location)
