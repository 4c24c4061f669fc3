"""Access to the bundled reference data in ``manifests/`` (installed as ``cma_builder.manifests``)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load_json(name: str) -> Any:
    """Parse the bundled JSON file ``manifests/<name>``."""
    return json.loads(resources.files("cma_builder.manifests").joinpath(name).read_text("utf-8"))
