"""A small model registry in the style of timm: ``@register_model`` and ``create_model(name, **cfg)``."""

from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

from ..errors import TrainError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Register a model class or factory under ``name``."""

    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **cfg) -> nn.Module:
    """Build a registered model; unknown names and unknown config keys are one-line errors."""
    if name not in _MODELS:
        raise TrainError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    check_kwargs(_MODELS[name], cfg, f"model {name!r}")
    return _MODELS[name](**cfg)


def accepted_kwargs(fn) -> list[str]:
    """Keyword names ``fn`` accepts, following ``**kwargs`` into the parent class's __init__."""
    names: list[str] = []
    for cls in (fn.__mro__ if isinstance(fn, type) else [fn]):
        init = cls.__init__ if isinstance(fn, type) else cls
        if isinstance(fn, type) and "__init__" not in cls.__dict__:
            continue
        params = inspect.signature(init).parameters
        names += [k for k, p in params.items() if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names


def check_kwargs(fn, cfg: dict, what: str) -> None:
    """One-line TrainError for a config key ``fn`` does not accept."""
    allowed = accepted_kwargs(fn)
    bad = sorted(set(cfg) - set(allowed))
    if bad:
        raise TrainError(f"{what}: unknown config key(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
