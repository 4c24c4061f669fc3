"""Pretraining methods by name: ``@register_method("point-mae")`` on the class, in its own file, and
``create_method("point-mae", **model_cfg)``.

A method's constructor declares no defaults: they are the ``model`` section of its bundled config
(``configs/<name>.yaml``, what users see and ``--set`` overrides), and ``create_method`` fills every
argument the caller leaves out from there."""

from __future__ import annotations

from ..configs import model_defaults
from ..errors import TrainError
from ..models.registry import Registry, check_kwargs

# name -> method class, in registration order (the order the CLI and the benchmark list them)
METHODS = Registry("method", normalize=lambda name: name.lower().replace("_", "-"))


def register_method(name: str):
    """Class decorator: register a Method subclass under ``name`` (also its ``name`` attribute)."""

    def deco(cls):
        cls.name = name
        return METHODS.register(name)(cls)

    return deco


def method_class(name: str):
    """The registered class of ``name`` (``Point_MAE`` finds ``point-mae``); a TrainError if unknown."""
    return METHODS.lookup(name)


def create_method(name: str, **cfg):
    """The method ``name`` built from ``cfg`` over its bundled ``model`` defaults; unknown keys and
    refused values are one-line TrainErrors."""
    cls = method_class(name)
    check_kwargs(cls, cfg, f"method {cls.name!r} model")
    try:
        return cls(**{**model_defaults(cls.name), **cfg})
    except (ValueError, TypeError) as e:
        raise TrainError(f"method {cls.name!r} model config: {e}") from None
