"""Objaverse 1.0 as downloaded: ``hf-objaverse-v1/glbs/<000-XXX>/<uid>.glb``.

The objects are the ``.glb`` files on disk (a partial download is the usual case); the id is the
uid (the file name). ``object-paths.json.gz``, when present, is only counted (read as a stream) so
the scan can say how much of the collection is downloaded. ``hf-objaverse-v1/lvis-annotations.json.gz`` ({category: [uid, ...]}), when
present, gives the categories (every LVIS category is a label, downloaded or not); objects outside
it are ``uncategorized``. The root may be the folder holding ``hf-objaverse-v1`` or that folder.
glTF is +Y up by its specification.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

from cma_builder.errors import CmaError
from cma_builder.source.base import UNCATEGORIZED, SourceObject
from cma_builder.source.files import FileCollection, category_id, category_name, object_id

VERSIONED = "hf-objaverse-v1"
LVIS = "lvis-annotations.json.gz"
PATHS = "object-paths.json.gz"
GROUP = re.compile(r"^\d{3}-\d{3}$")


class ObjaverseSource(FileCollection):
    layout = "objaverse"

    @classmethod
    def open(cls, root: Path, up_axis: str | None = None) -> "ObjaverseSource":
        base = _base(root)
        if base is None:
            raise CmaError(f"{root}: not an Objaverse download (expected {VERSIONED}/glbs/<000-XXX>/<uid>.glb)")
        names, category_of = _lvis(base / LVIS)
        names.setdefault(category_id(UNCATEGORIZED), UNCATEGORIZED)
        src = cls(root, [], up_axis=up_axis)
        objs = []
        for group in sorted(_scandir(base / "glbs"), key=lambda e: e.name):
            if not group.is_dir() or not GROUP.match(group.name):
                continue
            for entry in _scandir(Path(group.path)):
                if entry.name.endswith(".glb") and not entry.name.startswith(".") and entry.is_file():
                    uid = entry.name[:-4]
                    category = category_of.get(uid, UNCATEGORIZED)
                    objs.append(SourceObject(category_id(category), object_id(uid), Path(entry.path), "glb",
                                             category_name(category), None, src.default_up("glb")))
        if not objs:
            raise CmaError(f"{base / 'glbs'}: no <000-XXX>/<uid>.glb files (nothing downloaded yet?)")
        src = cls(root, objs, names, up_axis)
        src.listed = _count_listed(base / PATHS)
        return src

    listed: int | None = None  # entries of object-paths.json.gz

    def summary_name(self) -> str:
        have = sum(1 for _ in self.objects())
        of = f"; {have} of the {self.listed} objects object-paths.json.gz lists are here" if self.listed else ""
        return f"objaverse collection: {self.root}{of}"

    @staticmethod
    def looks_like(root: Path) -> bool:
        return _base(root) is not None


def _base(root: Path) -> Path | None:
    """The folder holding ``glbs/<000-XXX>/`` (Objaverse's group folders): root/hf-objaverse-v1 or root."""
    for base in (root / VERSIONED, root):
        if any(e.is_dir() and GROUP.match(e.name) for e in _scandir(base / "glbs")):
            return base
    return None


def _count_listed(path: Path) -> int | None:
    """The entries of object-paths.json.gz ({uid: "glbs/000-XXX/<uid>.glb"}), counted in a stream of
    1 MiB blocks (the full index has 800k entries); None when absent or unreadable."""
    if not path.is_file():
        return None
    count, tail = 0, b""
    try:
        with gzip.open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                text = tail + block
                count += text.count(b'.glb"')
                tail = text[-4:]
    except (OSError, EOFError):
        return None
    return count


def _lvis(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({category id: LVIS name}, {uid: LVIS name}) from lvis-annotations.json.gz (empty if absent)."""
    if not path.is_file():
        return {}, {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CmaError(f"{path}: not a readable gzipped JSON file ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise CmaError(f"{path}: expected {{category: [uid, ...]}}")
    names = {category_id(name): category_name(name) for name in data}
    category_of = {uid: name for name, uids in data.items() for uid in uids if isinstance(uid, str)}
    return names, category_of


def _scandir(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []
