"""What every asset collection provides: its objects and a manifest row for each.

A collection (a *layout*: ShapeNetCore.v2, Objaverse, ModelNet, a plain folder of meshes) is one
module of this package with one class implementing :class:`Source`. Everything downstream (scan,
render, validate) sees only :class:`SourceObject` values: which file to import, in which format,
under which category and split, and which way is up. Adding a collection means one new module
and one entry in ``LAYOUTS`` (cma_builder/source/__init__.py); see docs/SOURCES.md.

Ids: ``category_id`` and ``object_id`` are safe single path components (they become index rows
and file names). ShapeNet's are its synset and model folder names; other layouts derive them
from their own names (docs/SOURCES.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from cma_builder.errors import CmaError

UP_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")
DEFAULT_UP = {"obj": "+y", "glb": "+y", "gltf": "+y", "ply": "+y", "stl": "+z", "off": "+z"}
UNCATEGORIZED = "uncategorized"


@dataclass(frozen=True)
class SourceObject:
    category_id: str  # the index's synset_id column: ShapeNet synset, else the category as a safe name
    object_id: str  # the index's model_id column
    path: Path  # the file Blender imports
    fmt: str  # obj | glb | gltf | ply | stl | off
    category: str  # human-readable category name
    split: str | None = None  # the collection's official split; None: assigned by id (splits.json)
    up_axis: str = "+y"  # the file's up axis (layout/format default, or --up-axis)
    normalise: bool = True  # False for ShapeNet: its OBJ frame is already the dataset frame

    @property
    def key(self) -> tuple[str, str]:
        return (self.category_id, self.object_id)


class Source(Protocol):
    """An asset collection rooted at a folder."""

    layout: str
    root: Path

    def categories(self) -> list[tuple[str, str]]:
        """(category id, name) of every category the collection has, in label order."""

    def present_categories(self) -> list[str]:
        """Ids of the categories that hold objects here (the default selection), in order."""

    def resolve(self, names: list[str]) -> list[str]:
        """Category ids for user-given names or ids (CmaError naming an unknown one)."""

    def objects(self, category_ids: list[str] | None = None) -> Iterator[SourceObject]:
        """The objects of the given categories (all when None), sorted by (category id, object id)
        within each category, categories in ``category_ids`` order; found lazily."""

    def describe(self, obj: SourceObject, split: str) -> "ManifestRow":  # noqa: F821
        """The manifest row of one object: counts and problems found without Blender."""

    def summary_name(self) -> str:
        """One line naming the collection, for the scan summary."""


def parse_up_axis(text: str | None) -> str | None:
    """'+z', 'z', '-Y', ... -> '+z' / '-y'; None stays None."""
    if text is None:
        return None
    t = text.strip().lower()
    t = t if t[:1] in "+-" else "+" + t
    if t not in UP_AXES:
        raise CmaError(f"--up-axis '{text}': expected one of {', '.join(UP_AXES)}")
    return t


def up_rotation(up_axis: str) -> np.ndarray:
    """The rotation (3x3, det +1) taking ``up_axis`` to +Y, the dataset's up: +z maps (x, y, z) to
    (x, z, -y), as Blender's and most tools' Z-up to Y-up conversion does."""
    rows = {"+y": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "-y": [[1, 0, 0], [0, -1, 0], [0, 0, -1]],
            "+z": [[1, 0, 0], [0, 0, 1], [0, -1, 0]], "-z": [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
            "+x": [[0, -1, 0], [1, 0, 0], [0, 0, 1]], "-x": [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]}
    return np.array(rows[up_axis], dtype=np.float64)


def normalising_transform(vertices: np.ndarray, up_axis: str) -> np.ndarray:
    """source_to_world (4x4) of the documented rule: rotate ``up_axis`` to +Y, then move the
    centre of the bounding box of all vertices to the origin and scale its diagonal to 1."""
    R = up_rotation(up_axis)
    v = np.asarray(vertices, dtype=np.float64) @ R.T
    lo, hi = v.min(axis=0), v.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    if not np.isfinite(diagonal) or diagonal <= 0:
        raise ValueError("the vertices span no volume (a single point)")
    s = 1.0 / diagonal
    m = np.eye(4)
    m[:3, :3] = s * R
    m[:3, 3] = -s * (lo + hi) / 2.0
    return m


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 3) through a 4x4 affine transform."""
    return np.asarray(points, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
MAX_ID = 120


def safe_id(text: str) -> str:
    """A safe single path component for ``text`` (a relative path or a name): path separators become
    '__'; when anything else had to change (characters other than letters, digits and ``._+-``, a
    leading dot, more than MAX_ID characters) the id gets '-' and 8 hex digits of the text's SHA-1.
    'a/b' and 'a__b' still meet: a layout that can hold both (folder.py) adds the hash itself."""
    parts = [p for p in re.split(r"[/\\]+", text) if p]
    clean = "__".join(_UNSAFE_CHARS.sub("_", p) for p in parts).lstrip(".")
    if clean and clean == "__".join(parts) and len(clean) <= MAX_ID:
        return clean
    return hashed(clean or "object", text)


def hashed(name: str, text: str) -> str:
    """``name`` (cut to fit MAX_ID) + '-' + 8 hex digits of ``text``'s SHA-1: an id that tells texts apart."""
    return f"{name[:MAX_ID - 9]}-{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()
