"""Which install extra a command needs, checked before it starts (a one-line error, not an
ImportError deep inside a worker)."""

from __future__ import annotations

import importlib.util

from cma_builder.errors import CmaError

EXTRAS = {"render": ("bpy", "numba", "open3d", "imageio"), "validate": ("open3d", "trimesh", "DracoPy"),
          "ray": ("ray",), "view": ("rerun", "rerun_cli"),
          "train": ("torch", "sklearn", "h5py")}


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise CmaError naming ``pip install 'cma-toolkit[extra]'`` when one of ``modules`` (default:
    all of the extra's) is missing."""
    missing = [m for m in (modules or EXTRAS[extra]) if importlib.util.find_spec(m) is None]
    if missing:
        raise CmaError(f"{what} needs the [{extra}] extra ({', '.join(missing)} not installed): "
                       f"pip install 'cma-toolkit[{extra}]'")
