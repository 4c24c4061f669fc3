"""Frozen point encoders for evaluation: load one (export, run folder or checkpoint), or build the
same architecture at random init, and turn clouds into pooled features.

Every cloud is normalized like the pretraining data (centroid at the origin, max norm 1) before it
reaches the encoder. The pooled feature is max + mean over the encoder's tokens (the cls token, if
any, is left out): 2 x width for the point transformer, max + mean over per-point 1024-d features
for PointNet, and DGCNN's own max + mean embedding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


from ..errors import TrainError
from ..models import create_model, point_encoders


@dataclass
class EncoderSpec:
    """What an encoder is: its registry ``name``, ``config`` and weights (None = random init)."""

    name: str
    config: dict
    state_dict: dict | None
    source: str = "random init"
    method: str = ""
    epoch: int = 0

    def build(self, seed: int = 0) -> torch.nn.Module:
        """The module; at random init its weights depend only on ``seed``."""
        if self.name not in point_encoders():
            raise TrainError(f"{self.source}: cannot evaluate encoder '{self.name}' "
                             f"(expected one of {', '.join(point_encoders())})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = create_model(self.name, **self.config)
        if self.state_dict is not None:
            try:
                model.load_state_dict(self.state_dict)
            except RuntimeError as e:
                raise TrainError(f"{self.source}: weights do not fit {self.name}: {str(e).splitlines()[0]}") from None
        return model.eval()

    def min_points(self) -> int:
        """The fewest points per cloud the encoder takes: a point transformer's patches (num_group centers,
        group_size neighbours each), DGCNN's k neighbours; 1 otherwise."""
        c = self.config
        if self.name == "point_transformer":
            return max(int(c.get("num_group", 64)), int(c.get("group_size", 32)))
        if self.name == "dgcnn_encoder":
            return int(c.get("k", 20))
        return 1

    def check_points(self, n: int, where: str = "") -> None:
        """A one-line TrainError when clouds of ``n`` points are too small for this encoder."""
        need = self.min_points()
        if n < need:
            raise TrainError(f"{where}clouds of {n} points are too small for {self.name} (it needs at least {need}: "
                             f"{'num_group / group_size' if self.name == 'point_transformer' else 'k'} of its config)")

    def random_init(self) -> "EncoderSpec":
        return EncoderSpec(self.name, dict(self.config), None, "random init", self.method, 0)


def load_spec(source: str | os.PathLike, which: str = "last") -> EncoderSpec:
    """An exported encoder (``pcssl-train export``), a run folder, a run checkpoint file, or an official
    Point-MAE checkpoint (pretraining or fine-tuned; see ``pcssl_train.official``). Files are read
    with ``weights_only=True``: nothing in them runs."""
    from ..export import read_pretrained, run_checkpoint

    path = Path(source)
    if path.is_dir():
        path = run_checkpoint(path, which)
    if not path.is_file():
        raise TrainError(f"{source}: no such encoder file or run folder")
    got = read_pretrained(path)
    return EncoderSpec(got.name, got.config, got.weights, str(path), got.label, got.epoch)


def pooled(encoder: torch.nn.Module, xyz: torch.Tensor) -> torch.Tensor:
    """(B,N,3) normalized clouds -> (B,D) max + mean pooled features: every point encoder's
    ``forward_features``."""
    return encoder.forward_features(xyz)


def extract_features(encoder: torch.nn.Module, points: np.ndarray, batch_size: int = 64,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """Pooled features (N, D) float32 of (N, P, 3) clouds, in eval mode: normalized clouds, [max ; mean]
    over the encoder's tokens (``svm_presets.token_features``, the pooling of ``forward_features``)."""
    from .svm_presets import token_features

    return token_features(encoder, points, "max|mean", True, batch_size, device)
