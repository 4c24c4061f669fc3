"""What every pretraining method provides to the trainer."""

from __future__ import annotations

import torch
import torch.nn as nn


class Method(nn.Module):
    """A self-supervised objective around a backbone.

    ``name``: its registry name (set by ``@register_method``). ``kind``: the CmaDataset sample kind it
    trains on. ``forward(batch)`` returns a dict with ``loss`` (scalar to minimize) and any detached
    terms to log. ``encoder_export()`` gives the registry name, config and weights of the pretrained
    point encoder for downstream use.
    """

    name: str = ""
    kind: str = "fused"

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def encoder_export(self) -> tuple[str, dict, dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError
