"""Official Point-MAE checkpoints (github.com/Pang-Yatian/Point-MAE): read them into this package's
models and write them back, so published weights can be evaluated or trained on here and a model
pretrained here can be fine-tuned by the official code.

The official layout is ``{'base_model': state_dict, 'optimizer': ..., 'epoch': ..., 'metrics': ...,
'best_metrics': ...}``; keys carry ``module.`` when the run used (Distributed)DataParallel. Two
models are understood, told apart by their keys:

* ``pretrain`` - ``Point_MAE`` (``MAE_encoder.*``, ``MAE_decoder.*``, ``mask_token``, ...) -> the
  ``point-mae`` method (:data:`PRETRAIN_KEYS`);
* ``finetune`` - ``PointTransformer`` (``cls_token``, ``blocks.blocks.*``, ``cls_head_finetune.*``)
  -> the ``point_transformer_cls`` classifier (:data:`FINETUNE_KEYS`).

Loading is strict: every key must map and every parameter of the model must be given, with its
shape; otherwise a one-line :class:`TrainError` names the first offending key. The weights do not
record the number of heads, patches and (fine-tuned models) points per patch; the official configs
use 6 heads, 64 patches of 32 points, which are the defaults here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .engine import checkpoint as ckpt
from .errors import TrainError

# (official prefix, our prefix); the first matching official prefix wins.
PRETRAIN_KEYS = (
    ("mask_token", "mask_token"),
    ("MAE_encoder.encoder.", "encoder.tokenizer."),
    ("MAE_encoder.pos_embed.", "encoder.pos_embed."),
    ("MAE_encoder.blocks.blocks.", "encoder.transformer.blocks."),
    ("MAE_encoder.norm.", "encoder.transformer.norm."),
    ("decoder_pos_embed.", "decoder_pos_embed."),
    ("MAE_decoder.blocks.", "decoder.blocks."),
    ("MAE_decoder.norm.", "decoder.norm."),
    ("increase_dim.0.", "head.proj."),
)
FINETUNE_KEYS = (
    ("cls_token", "encoder.cls_token"),
    ("cls_pos", "encoder.cls_pos"),
    ("encoder.", "encoder.tokenizer."),
    ("pos_embed.", "encoder.pos_embed."),
    ("blocks.blocks.", "encoder.transformer.blocks."),
    ("norm.", "encoder.transformer.norm."),
    ("cls_head_finetune.", "head.net."),
)
ENCODER_PREFIX = "MAE_encoder."   # the pretrained encoder inside Point_MAE, what the official fine-tuning reads
DEFAULTS = {"num_heads": 6, "num_group": 64, "group_size": 32, "drop_path": 0.1}


def rename(state: dict, rules, reverse: bool = False, where: str = "") -> dict:
    """Keys renamed by ``rules`` (official -> ours, or back with ``reverse``); an unmatched key is a
    one-line error naming it."""
    out = {}
    for key, value in state.items():
        for official, ours in rules:
            src, dst = (ours, official) if reverse else (official, ours)
            if key == src or (src.endswith(".") and key.startswith(src)):
                out[dst + key[len(src):]] = value
                break
        else:
            raise TrainError(f"{where}unexpected key {key!r} (not part of the official Point-MAE "
                             f"{'pretraining' if rules is PRETRAIN_KEYS else 'fine-tuning'} model)")
    return out


@dataclass
class OfficialCheckpoint:
    """An official checkpoint's weights with the ``module.`` prefix removed, and what they are."""

    kind: str                      # "pretrain" or "finetune"
    state: dict[str, torch.Tensor]
    source: str
    epoch: int = 0
    extra: dict = field(default_factory=dict)

    # --- what the weights tell --------------------------------------------------------------
    def count(self, prefix: str) -> int:
        pat = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({m.group(1) for k in self.state if (m := pat.match(k))})

    def tensor(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise TrainError(f"{self.source}: missing key {key!r} of the official Point-MAE {self.kind} model")
        return self.state[key]

    @property
    def width(self) -> int:
        return int(self.tensor("MAE_encoder.norm.weight" if self.kind == "pretrain" else "norm.weight").shape[-1])

    def encoder_config(self, **overrides) -> dict:
        """The ``point_transformer`` config of the encoder (pretrain: no cls token; finetune: with)."""
        blocks = "MAE_encoder.blocks.blocks." if self.kind == "pretrain" else "blocks.blocks."
        head = self.state.get("increase_dim.0.weight")     # only a full pretraining checkpoint has it
        group_size = int(head.shape[0]) // 3 if head is not None else DEFAULTS["group_size"]
        cfg = dict(num_group=DEFAULTS["num_group"], group_size=group_size, width=self.width,
                   depth=self.count(blocks), num_heads=DEFAULTS["num_heads"], drop_path=DEFAULTS["drop_path"])
        cfg.update({k: v for k, v in overrides.items() if k in cfg})
        if self.kind == "finetune":
            cfg["cls_token"] = True
        return cfg

    def method_config(self, **overrides) -> dict:
        """The ``point-mae`` method config of a pretraining checkpoint."""
        self.require("pretrain")
        cfg = self.encoder_config(**overrides)
        cfg.update(decoder_depth=self.count("MAE_decoder.blocks."), decoder_heads=cfg["num_heads"], mask_ratio=0.6)
        cfg.update({k: v for k, v in overrides.items() if k in ("decoder_heads", "mask_ratio")})
        return cfg

    def classifier_config(self, **overrides) -> dict:
        self.require("finetune")
        cfg = {k: v for k, v in self.encoder_config(**overrides).items() if k != "cls_token"}
        cfg["num_classes"] = int(self.tensor("cls_head_finetune.8.weight").shape[0])
        return cfg

    def require(self, kind: str) -> None:
        if self.kind != kind:
            raise TrainError(f"{self.source}: an official Point-MAE {self.kind} checkpoint, not a {kind} one")

    # --- our models -------------------------------------------------------------------------
    def ours(self) -> dict[str, torch.Tensor]:
        """The weights under this package's names (the whole method / classifier)."""
        return rename(self.state, PRETRAIN_KEYS if self.kind == "pretrain" else FINETUNE_KEYS,
                      where=f"{self.source}: ")

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The point encoder's weights under ``PointTransformerEncoder`` names."""
        return {k[len("encoder."):]: v for k, v in self.ours().items() if k.startswith("encoder.")}

    def check(self) -> None:
        """Strict check of every key and shape against the model the file holds. The number of heads
        does not change any shape, so the check builds the model with one head and holds for any."""
        from .methods import create_method
        from .models import create_model

        if self.kind == "finetune":
            model, state = create_model("point_transformer_cls", **self.classifier_config(num_heads=1)), self.ours()
        elif "mask_token" in self.state:
            model, state = create_method("point-mae", **self.method_config(num_heads=1)), self.ours()
        else:   # the encoder alone (MAE_encoder.*), as exported for the official fine-tuning
            model, state = create_model("point_transformer", **self.encoder_config(num_heads=1)), self.encoder_state()
        load_strict(model, state, self.source)

    def method(self, **overrides):
        """The ``point-mae`` method with these weights (pretraining checkpoints)."""
        from .methods import create_method

        model = create_method("point-mae", **self.method_config(**overrides))
        load_strict(model, self.ours(), self.source)
        return model

    def classifier(self, **overrides):
        """The ``point_transformer_cls`` classifier with these weights (fine-tuned checkpoints)."""
        from .models import create_model

        model = create_model("point_transformer_cls", **self.classifier_config(**overrides))
        load_strict(model, self.ours(), self.source)
        return model


def load_strict(model: torch.nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` that names the first missing / unexpected / misshapen key in one line."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        more = len(missing) + len(unexpected) - 1
        raise TrainError(f"{source}: {what}{f' (and {more} more)' if more else ''} for "
                         f"{type(model).__name__}; nothing was loaded")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise TrainError(f"{source}: {k!r} has shape {tuple(v.shape)}, the model expects "
                             f"{tuple(expected[k].shape)}; nothing was loaded")
    model.load_state_dict(state)


def unwrap(data, source: str = "") -> dict | None:
    """The state dict of an official checkpoint (``base_model`` / ``model`` / ``state_dict`` wrapper,
    PointDif's ``pointdif``, or a bare state dict), ``module.`` stripped; None when ``data`` is not
    such a thing."""
    state = data
    if isinstance(data, dict):
        for key in ("base_model", "model", "state_dict", "pointdif"):
            if isinstance(data.get(key), dict):
                state = data[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    if not all(isinstance(k, str) for k in state):
        return None
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def kind_of(state: dict) -> str | None:
    if "mask_token" in state or any(k.startswith(ENCODER_PREFIX) for k in state):
        return "pretrain"
    if "cls_token" in state and any(k.startswith("blocks.blocks.") for k in state):
        return "finetune"
    return None


def from_data(data, source: str) -> OfficialCheckpoint | None:
    """An :class:`OfficialCheckpoint` if ``data`` (a loaded file) is in the official layout."""
    if isinstance(data, dict) and isinstance(data.get("format"), str):
        return None                                          # one of our own files
    state = unwrap(data, source)
    kind = kind_of(state) if state is not None else None
    if kind is None:
        return None
    epoch = data.get("epoch", 0) if isinstance(data, dict) else 0
    return OfficialCheckpoint(kind, state, source, int(epoch) if isinstance(epoch, int) else 0)


def read(path: str | os.PathLike) -> OfficialCheckpoint:
    """Read an official checkpoint file (safely: no code in it runs)."""
    data = ckpt.load_untrusted(Path(path))
    found = from_data(data, str(path))
    if found is None:
        raise TrainError(f"{path}: not an official Point-MAE checkpoint (no Point_MAE or PointTransformer keys)")
    return found


# --- writing --------------------------------------------------------------------------------
def pretrain_state(method) -> dict[str, torch.Tensor]:
    """The official ``Point_MAE`` state dict of a ``point-mae`` method (keys without ``module.``)."""
    return rename(method.state_dict(), PRETRAIN_KEYS, reverse=True)


def encoder_as_pretrain_state(encoder_state: dict) -> dict[str, torch.Tensor]:
    """A ``PointTransformerEncoder``'s weights as the ``MAE_encoder.*`` part of ``Point_MAE``: what the
    official fine-tuning (``load_model_from_ckpt``) reads from a pretraining checkpoint."""
    ours = {"encoder." + k: v for k, v in encoder_state.items()}
    return rename(ours, PRETRAIN_KEYS, reverse=True)


def write(state: dict[str, torch.Tensor], out: str | os.PathLike, epoch: int = 0) -> Path:
    """Save in the layout of the official ``save_checkpoint`` (a DataParallel run: ``module.`` keys)."""
    out = Path(out)
    ckpt.save_atomic({"base_model": {"module." + k: v.detach().cpu().clone() for k, v in state.items()},
                      "epoch": int(epoch), "metrics": {"acc": 0.0}, "best_metrics": {"acc": 0.0}}, out)
    return out
