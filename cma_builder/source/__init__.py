"""Where objects come from: asset collections (one module per layout), file inspection without
Blender, scan manifests, taxonomy, splits, synthetic models.

``open_source(path, layout)`` opens a collection; with no layout it is detected (the first in
``LAYOUTS`` whose ``looks_like`` accepts the folder). A new collection is one module with a class
like those named here (docs/SOURCES.md), and one entry in ``LAYOUTS``; the CLI's ``--layout``
choices come from it. Importing this package loads nothing else (the CLI reads ``LAYOUTS``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from cma_builder.errors import CmaError

# layout name -> "module:class", in detection order: the most specific first
LAYOUTS = {
    "shapenet": "cma_builder.source.shapenet:ShapeNetSource",
    "objaverse": "cma_builder.source.objaverse:ObjaverseSource",
    "modelnet": "cma_builder.source.modelnet:ModelNetSource",
    "folder": "cma_builder.source.folder:FolderSource",
}


def layout_class(layout: str):
    """The Source class of ``layout``."""
    module, name = LAYOUTS[layout].split(":")
    return getattr(importlib.import_module(module), name)


def open_source(path: str | os.PathLike, layout: str | None = None, up_axis: str | None = None):
    """The collection (a :class:`~cma_builder.source.base.Source`) at ``path``: of ``layout``, or
    the first layout it looks like."""
    from cma_builder.source.base import parse_up_axis

    root = Path(path).expanduser()
    if layout is not None and layout not in LAYOUTS:
        raise CmaError(f"--layout '{layout}': expected one of {', '.join(LAYOUTS)}")
    up_axis = parse_up_axis(up_axis)
    if layout == "shapenet":
        return layout_class("shapenet").open(root, up_axis)
    if not root.exists():
        raise CmaError(f"{root}: no such folder")
    if root.is_file() and root.suffix.lower() in (".zip", ".tar", ".gz", ".tgz"):
        raise CmaError(f"{root}: is an archive (a zip archive or tarball); extract it and pass the extracted folder")
    if root.is_file():
        raise CmaError(f"{root}: is a file; expected the collection's root folder (a folder of mesh files will do)")
    root = root.resolve()
    if layout is None:
        layout = next((name for name in LAYOUTS if layout_class(name).looks_like(root)), None)
        if layout is None:
            raise CmaError(f"{root}: no mesh files found (.obj .glb .gltf .ply .stl .off), and not a ShapeNetCore.v2, "
                           "Objaverse or ModelNet layout")
    return layout_class(layout).open(root, up_axis)


__all__ = ["LAYOUTS", "layout_class", "open_source"]
