"""``pretrain --init FILE``: start a run from published or earlier weights instead of random init.

FILE may be an official Point-MAE checkpoint, a pcssl-train run checkpoint or an encoder export (read
with ``weights_only=True``). The whole method is loaded when FILE holds this very model (an official
``Point_MAE`` checkpoint for ``point-mae``, a run checkpoint of the same method and model config);
otherwise only the point encoder is, e.g. CrossAlignNet's point branch from Point-MAE's weights, and
the method's other parts keep their initialization. Loading is strict either way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import official
from ..errors import TrainError


ENCODER_DEFAULTS = {"fusion": "add", "patch_norm": "none", "cls_token": False}


def _compare(ours: dict, theirs: dict, keys, source: str, hint: bool = False) -> None:
    for key in keys:
        a, b = ours.get(key, ENCODER_DEFAULTS.get(key)), theirs.get(key, ENCODER_DEFAULTS.get(key))
        if key in theirs and a != b:
            raise TrainError(f"{source}: its model has {key}={b!r}, this run's has {a!r}"
                             + (f" (--set model.{key}={b})" if hint else ""))


def initialize(method: torch.nn.Module, path: str | Path, model_cfg: dict | None = None) -> str:
    """Load FILE's weights into a freshly built ``method`` (built from ``model_cfg``); returns a
    one-line account of what was loaded."""
    from ..export import read_pretrained

    source = str(path)
    got = read_pretrained(Path(path))
    name, cfg, _ = method.encoder_export()
    found = got.official
    if found is not None and method.name == "point-mae" and "mask_token" in found.state:
        if model_cfg:
            _compare(model_cfg, found.method_config(), ("width", "depth", "decoder_depth", "group_size"), source,
                     hint=True)
        official.load_strict(method, found.ours(), source)
        return f"the whole point-mae model from the official checkpoint {source}"
    if got.method is not None and got.method.name == method.name and got.model_config == model_cfg:
        official.load_strict(method, got.method.state_dict(), source)
        return f"the whole {method.name} model from {source} (epoch {got.epoch})"
    their_cfg = got.config
    if got.official is not None:   # the weights do not record these; the official defaults were assumed
        their_cfg = {k: v for k, v in their_cfg.items() if k not in ("num_heads", "num_group", "group_size", "drop_path")}
    if got.name != name:
        raise TrainError(f"{source}: holds a {got.name} encoder, {method.name} trains a {name}")
    _compare(cfg, their_cfg, ("width", "depth", "num_heads", "fusion", "patch_norm", "cls_token"), source)
    official.load_strict(method.encoder, dict(got.weights), source)
    return f"the point encoder of {method.name} from {source} ({len(got.weights)} tensors); the rest keeps its init"
