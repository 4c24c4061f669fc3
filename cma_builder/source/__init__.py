"""Where objects come from: asset collections (one module per layout), file inspection without
Blender, scan manifests, taxonomy, splits, synthetic models.

``open_source(path, layout)`` opens a collection; with no layout it is detected (first match in
``LAYOUTS`` order). A new collection is one module with a class like those below, added here.
"""

from __future__ import annotations

import os
from pathlib import Path

from cma_builder.errors import CmaError
from cma_builder.source.base import Source, SourceObject, parse_up_axis


def _layouts() -> dict:
    from cma_builder.source.folder import FolderSource
    from cma_builder.source.modelnet import ModelNetSource
    from cma_builder.source.objaverse import ObjaverseSource
    from cma_builder.source.shapenet import ShapeNetSource

    return {"shapenet": ShapeNetSource, "objaverse": ObjaverseSource, "modelnet": ModelNetSource, "folder": FolderSource}


LAYOUTS = ("shapenet", "objaverse", "modelnet", "folder")  # detection order: the most specific first


def open_source(path: str | os.PathLike, layout: str | None = None, up_axis: str | None = None) -> Source:
    """The collection at ``path``: of ``layout``, or the first layout it looks like."""
    root = Path(path).expanduser()
    classes = _layouts()
    if layout is not None and layout not in classes:
        raise CmaError(f"--layout '{layout}': expected one of {', '.join(LAYOUTS)}")
    up_axis = parse_up_axis(up_axis)
    if layout == "shapenet":
        return classes["shapenet"].open(root, up_axis)
    if not root.exists():
        raise CmaError(f"{root}: no such folder")
    if root.is_file() and root.suffix.lower() in (".zip", ".tar", ".gz", ".tgz"):
        raise CmaError(f"{root}: is an archive (a zip archive or tarball); extract it and pass the extracted folder")
    if root.is_file():
        raise CmaError(f"{root}: is a file; expected the collection's root folder (a folder of mesh files will do)")
    root = root.resolve()
    if layout is None:
        layout = next((name for name in LAYOUTS if classes[name].looks_like(root)), None)
        if layout is None:
            raise CmaError(f"{root}: no mesh files found (.obj .glb .gltf .ply .stl .off), and not a ShapeNetCore.v2, "
                           "Objaverse or ModelNet layout")
    return classes[layout].open(root, up_axis)


__all__ = ["LAYOUTS", "Source", "SourceObject", "open_source"]
