"""Collections of plain mesh files (Objaverse, ModelNet, a folder): what they share.

:class:`FileCollection` holds the category list and the objects found by a layout module and
answers the :class:`~cma_builder.source.base.Source` questions; :func:`describe_file` builds a
manifest row from any supported file without Blender.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Iterator

from cma_builder.errors import CmaError
from cma_builder.paths import name_problem
from cma_builder.source.base import DEFAULT_UP, SourceObject, hashed, safe_id, sha256_file
from cma_builder.source.fileinfo import SUFFIXES, inspect_file
from cma_builder.source.manifest import ManifestRow
from cma_builder.source.objfile import Problem, error

_UNSAFE_CATEGORY = re.compile(r"[^A-Za-z0-9._+-]+")


def category_id(name: str) -> str:
    """A category name as a safe id: runs of other characters than letters, digits and ``._+-``
    become '_' ('bow_(weapon)' -> 'bow_weapon'); nothing left gives 'category-<sha1>'."""
    out = re.sub("_+", "_", _UNSAFE_CATEGORY.sub("_", name)).strip("_").lstrip(".")
    return out[:120] if out else hashed("category", name)


def category_name(name: str) -> str:
    """A category's name as the index shows it: the name itself when it is a safe name (no slash,
    backslash, control character or leading dot: it is an index column), else its category id."""
    return name if name_problem(name) is None else category_id(name)


def object_id(name: str) -> str:
    """An object id from a name a collection gives (a uid, a file stem): itself when it is a safe name,
    else :func:`~cma_builder.source.base.safe_id` of it."""
    return name if name_problem(name) is None else safe_id(name)


def mesh_files(folder: Path) -> Iterator[Path]:
    """Every file with a supported mesh suffix below ``folder`` (links to folders not followed),
    in sorted order per folder, found with os.scandir as the walk goes."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir(follow_symlinks=False):
            yield from mesh_files(Path(e.path))
        elif e.name[e.name.rfind("."):].lower() in SUFFIXES and e.is_file():
            yield Path(e.path)


class FileCollection:
    """A collection whose objects are single files, grouped in named categories."""

    layout = "folder"

    def __init__(self, root: Path, objects: Iterable[SourceObject], names: dict[str, str] | None = None,
                 up_axis: str | None = None):
        self.root = root
        self.up_override = up_axis
        self._by_category: dict[str, list[SourceObject]] = {}
        for obj in objects:
            self._by_category.setdefault(obj.category_id, []).append(obj)
        for objs in self._by_category.values():
            objs.sort(key=lambda o: o.object_id)
        self._names = dict(names or {})
        for cid, objs in self._by_category.items():
            self._names.setdefault(cid, objs[0].category)

    def categories(self) -> list[tuple[str, str]]:
        return [(cid, self._names[cid]) for cid in sorted(self._names)]

    def present_categories(self) -> list[str]:
        return sorted(self._by_category)

    def resolve(self, names: list[str]) -> list[str]:
        known = {cid.lower(): cid for cid in self._names}
        known.update({name.lower(): cid for cid, name in self._names.items()})
        out = []
        for token in names:
            cid = known.get(token.strip().lower()) or known.get(category_id(token.strip()).lower())
            if cid is None:
                have = ", ".join(sorted(self._names)[:8]) + (", ..." if len(self._names) > 8 else "")
                raise CmaError(f"unknown category '{token}' in {self.root} (categories: {have})")
            if cid not in out:
                out.append(cid)
        return out

    def objects(self, category_ids: list[str] | None = None) -> Iterator[SourceObject]:
        for cid in (sorted(self._by_category) if category_ids is None else category_ids):
            yield from self._by_category.get(cid, [])

    def describe(self, obj: SourceObject, split: str) -> ManifestRow:
        return describe_file(obj, split, self.root)

    def summary_name(self) -> str:
        return f"{self.layout} collection: {self.root}"

    def default_up(self, fmt: str) -> str:
        return self.up_override or DEFAULT_UP[fmt]


def describe_file(obj: SourceObject, split: str, root: Path | None = None) -> ManifestRow:
    """The manifest row of one source file: size, SHA-256, counts and problems (no Blender). Files it
    refers to must lie inside ``root``."""
    row = ManifestRow(model_id=obj.object_id, synset_id=obj.category_id, category=obj.category, split=split,
                      obj_path=str(obj.path), format=obj.fmt, up_axis=obj.up_axis)
    problems: list[Problem] = []
    try:
        row.obj_bytes, row.obj_sha256 = sha256_file(obj.path)
    except FileNotFoundError:
        problems.append(error("file_missing", f"{obj.path.name} does not exist"))
    except OSError as exc:
        problems.append(error("file_unreadable", exc.strerror or str(exc)))
    if not problems:
        if row.obj_bytes == 0:
            problems.append(error("file_empty", f"{obj.path.name} is 0 bytes"))
        else:
            info = inspect_file(obj.path, obj.fmt, root)
            row.n_meshes, row.n_vertices, row.n_triangles = info.n_meshes, info.n_vertices, info.n_triangles
            row.n_faces = info.n_triangles
            row.n_materials, row.n_animations, row.n_armatures = info.n_materials, info.n_animations, info.n_armatures
            row.n_transparent = info.n_transparent
            row.textures, row.textures_missing = info.textures, info.textures_missing
            problems += info.problems
            if info.n_triangles == 0 and not any(p.severity == "error" for p in problems):
                problems.append(error("no_triangles", "the file holds no triangle (points, lines or faces with fewer "
                                                      "than 3 corners only)"))
    finish(row, problems)
    return row


def finish(row: ManifestRow, problems: list[Problem]) -> None:
    """Set the row's status (its worst problem) and its problem and note lists."""
    severities = {p.severity for p in problems}
    row.status = "error" if "error" in severities else "warn" if "warn" in severities else "ok"
    row.problems = [str(p) for p in problems if p.severity != "note"]
    row.notes = [str(p) for p in problems if p.severity == "note"]

