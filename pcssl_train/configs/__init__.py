"""Bundled YAML run configs (published settings and tiny CPU ones). A method's ``<method>.yaml``
is the one place its defaults are written: its ``model`` section is what the method's constructor
gets for every argument a caller leaves out (``pcssl_train.methods.create_method``)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent


@functools.cache
def _parsed(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())


def bundled(name: str) -> dict:
    """The bundled ``<name>.yaml`` (parsed once per process; a fresh copy each call)."""
    return copy.deepcopy(_parsed(name))


def model_defaults(method: str) -> dict:
    """The ``model`` section of the bundled ``<method>.yaml``."""
    return bundled(method)["model"]
