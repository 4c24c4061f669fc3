"""Pretraining methods by name: ``create_method("point-mae", **model_cfg)``."""

from __future__ import annotations

from ..errors import TrainError
from ..models.registry import check_kwargs
from .base import Method
from .cross_align_net import CrossAlignNet
from .mm_point import MMPoint
from .point_mae import PointMAE
from .serp_pointnet import SeRPPointNet
from .serp_transformer import SeRPTransformer
from .vasp import VASP

METHODS: dict[str, type[Method]] = {m.name: m for m in (PointMAE, SeRPPointNet, SeRPTransformer, VASP, CrossAlignNet,
                                                     MMPoint)}


def method_class(name: str) -> type[Method]:
    key = name.lower().replace("_", "-")
    if key not in METHODS:
        raise TrainError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[key]


def create_method(name: str, **cfg) -> Method:
    cls = method_class(name)
    check_kwargs(cls, cfg, f"method {cls.name!r} model")
    try:
        return cls(**cfg)
    except (ValueError, TypeError) as e:
        raise TrainError(f"method {cls.name!r} model config: {e}") from None


__all__ = ["METHODS", "Method", "create_method", "method_class"]
