"""ModelNet10/40 as distributed: ``<class>/{train,test}/<class>_NNNN.off``.

Category = the class folder, split = the folder's (the official split; ModelNet has no val), id =
the file name without ``.off``. OFF files are Z-up (their default up axis is +z).
"""

from __future__ import annotations

import os
from pathlib import Path

from cma_builder.errors import CmaError
from cma_builder.source.base import SourceObject, safe_id
from cma_builder.source.files import FileCollection, category_id, category_name, object_id

SPLITS = ("train", "test")


class ModelNetSource(FileCollection):
    layout = "modelnet"

    @classmethod
    def open(cls, root: Path, up_axis: str | None = None) -> "ModelNetSource":
        src = cls(root, [], up_axis=up_axis)
        objs, seen = [], set()
        for cls_dir in _dirs(root):
            for split in SPLITS:
                for entry in sorted(_entries(cls_dir / split), key=lambda e: e.name):
                    if entry.name.lower().endswith(".off") and not entry.name.startswith(".") and entry.is_file():
                        path = Path(entry.path)
                        key = (category_id(cls_dir.name), object_id(path.stem))
                        if key in seen:  # the same name in train and test: the split keeps them apart
                            key = (key[0], safe_id(f"{split}/{path.stem}"))
                        seen.add(key)
                        objs.append(SourceObject(*key, path, "off", category_name(cls_dir.name), split,
                                                 src.default_up("off")))
        if not objs:
            raise CmaError(f"{root}: no <class>/train/*.off or <class>/test/*.off files (the ModelNet layout)")
        return cls(root, objs, up_axis=up_axis)

    @staticmethod
    def looks_like(root: Path) -> bool:
        for d in _dirs(root)[:50]:
            for split in SPLITS:
                if any(e.name.lower().endswith(".off") for e in _entries(d / split)):
                    return True
        return False


def _dirs(root: Path) -> list[Path]:
    return sorted(Path(e.path) for e in _entries(root) if e.is_dir() and not e.name.startswith("."))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []
