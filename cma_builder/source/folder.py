"""A plain folder of mesh files (any tree): category = the first folder below the root.

Files directly in the root are ``uncategorized``. The object id is the path relative to the root
made a safe id (``chairs/ikea/a.obj`` -> ``chairs__ikea__a.obj``); the split is assigned by id
(manifests/splits.json). Formats by suffix: .obj .glb .gltf .ply .stl .off (any case).
"""

from __future__ import annotations

from pathlib import Path

from cma_builder.errors import CmaError
from cma_builder.source.base import UNCATEGORIZED, SourceObject, hashed, safe_id
from cma_builder.source.fileinfo import format_of
from cma_builder.source.files import FileCollection, category_id, category_name, mesh_files


class FolderSource(FileCollection):
    layout = "folder"

    @classmethod
    def open(cls, root: Path, up_axis: str | None = None) -> "FolderSource":
        objs, seen = [], set()
        src = cls(root, [], up_axis=up_axis)
        for path in mesh_files(root):
            rel = path.relative_to(root)
            category = rel.parts[0] if len(rel.parts) > 1 else UNCATEGORIZED
            oid = safe_id(rel.as_posix())
            if (category_id(category), oid) in seen:  # 'a/b.obj' and a file named 'a__b.obj': keep both apart
                oid = hashed(oid, rel.as_posix())
            seen.add((category_id(category), oid))
            fmt = format_of(path)
            objs.append(SourceObject(category_id(category), oid, path, fmt, category_name(category), None,
                                     src.default_up(fmt)))
        if not objs:
            raise CmaError(f"{root}: no mesh files found (.obj .glb .gltf .ply .stl .off)")
        return cls(root, objs, up_axis=up_axis)

    @staticmethod
    def looks_like(root: Path) -> bool:
        return next(mesh_files(root), None) is not None
