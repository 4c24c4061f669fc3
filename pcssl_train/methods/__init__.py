"""Pretraining methods by name: ``create_method("point-mae", **model_cfg)``. Each method registers
itself (``@register_method``) in its own file; importing this package imports them all, in the order
the CLI and the benchmark list them."""

from __future__ import annotations

from . import point_mae, serp_pointnet, serp_transformer, vasp, cross_align_net, mm_point  # noqa: F401  (registration)
from .base import Method
from .registry import METHODS, create_method, method_class, register_method

__all__ = ["METHODS", "Method", "create_method", "method_class", "register_method"]
