"""Registries in the style of timm: ``@register_model`` and ``create_model(name, **cfg)`` here, and
the same :class:`Registry` behind ``@register_method`` (``pcssl_train.methods.registry``)."""

from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

from ..errors import TrainError


class Registry(dict):
    """Name -> class or factory, in registration order, filled by the ``register`` decorator.

    ``lookup`` answers an unknown name with a one-line TrainError listing the known ones; ``normalize``
    maps a user-given name to its key (e.g. ``"Point_MAE"`` -> ``"point-mae"``)."""

    def __init__(self, kind: str, normalize: Callable[[str], str] = str):
        super().__init__()
        self.kind, self.normalize = kind, normalize

    def register(self, name: str):
        def deco(fn):
            if name in self:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self[name] = fn
            return fn

        return deco

    def lookup(self, name: str):
        key = self.normalize(name)
        if key not in self:
            raise TrainError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[key]


MODELS = Registry("model")
# encoder name -> the registry name of its downstream classifier (``register_model(classifier_for=...)``)
CLASSIFIERS: dict[str, str] = {}


def register_model(name: str, classifier_for: str | None = None):
    """Register a model class or factory under ``name``; ``classifier_for``: the registry name of the
    point encoder this model is the downstream classifier of (see :func:`create_classifier`)."""
    register = MODELS.register(name)

    def deco(fn):
        if classifier_for is not None:
            CLASSIFIERS[classifier_for] = name
        return register(fn)

    return deco


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, **cfg) -> nn.Module:
    """Build a registered model; unknown names and unknown config keys are one-line errors."""
    fn = MODELS.lookup(name)
    check_kwargs(fn, cfg, f"model {name!r}")
    return fn(**cfg)


def point_encoders() -> list[str]:
    """The point encoders that have a downstream classifier (what the evaluation protocols take)."""
    return list(CLASSIFIERS)


def create_classifier(encoder: str, config: dict, num_classes: int, drop_path: float) -> nn.Module:
    """The downstream classifier of the point encoder ``encoder`` (registry name), built from the
    encoder's ``config``: the classifier's ``config_from_encoder(config, drop_path)`` if it has one
    (the config as is otherwise). Its weights are left at their initialization."""
    name = CLASSIFIERS[encoder]
    adapt = getattr(MODELS[name], "config_from_encoder", None)
    return create_model(name, num_classes=num_classes, **(adapt(config, drop_path) if adapt else config))


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
