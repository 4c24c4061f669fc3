"""Pretrained point encoders for downstream use: ``pcssl-train export RUN`` writes one file;
``load_encoder(path)`` rebuilds the module from the registry and loads the weights."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .engine import checkpoint as ckpt
from .errors import TrainError
from .methods import create_method
from .models import create_model

FORMAT = "pcssl-encoder/1"


def run_checkpoint(run: Path, which: str = "last") -> Path:
    path = run / "checkpoints" / ("last.pt" if which == "last" else f"epoch-{int(which):04d}.pt")
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint (is {run} a pcssl-train run that finished an epoch?)")
    return path


def export_encoder(run: str | os.PathLike, out: str | os.PathLike | None = None, which: str = "last") -> Path:
    run = Path(run)
    state = ckpt.load(run_checkpoint(run, which))
    method = create_method(state["config"]["method"], **state["config"]["model"])
    method.load_state_dict(state["model"])
    name, cfg, weights = method.encoder_export()
    out = Path(out) if out else run / f"encoder-{state['config']['method']}-epoch{state['epoch']}.pt"
    ckpt.save_atomic({"format": FORMAT, "model": name, "config": cfg, "state_dict": weights,
                      "method": state["config"]["method"], "epoch": state["epoch"], "step": state["step"],
                      "torch": torch.__version__}, out)
    return out


def load_encoder(path: str | os.PathLike, map_location="cpu") -> torch.nn.Module:
    """The exported encoder as a module (``create_model(name, **config)`` + its weights)."""
    data = ckpt.load(Path(path), map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TrainError(f"{path}: not a pcssl-train encoder export")
    model = create_model(data["model"], **data["config"])
    model.load_state_dict(data["state_dict"])
    return model
