"""Discover a ShapeNetCore.v2 tree and inspect its models.

Layout: ``<root>/taxonomy.json`` (optional), ``<root>/<synset>/<model>/models/model_normalized.obj``
(+ ``.mtl``, ``.json``), textures in ``<root>/<synset>/<model>/images/`` referenced from the MTL
as ``../images/...``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cma_builder.errors import CmaError
from cma_builder.source.base import SourceObject
from cma_builder.source.files import finish
from cma_builder.source.manifest import ManifestRow
from cma_builder.source.objfile import Problem, error, inspect_materials, inspect_obj, warn
from cma_builder.source.taxonomy import SYNSET_ID_RE, Taxonomy

MODEL_OBJ = Path("models") / "model_normalized.obj"
LAYOUT = "<synset id>/<model id>/models/model_normalized.obj"


@dataclass(frozen=True)
class ModelRef:
    synset_id: str
    model_id: str
    model_dir: Path

    @property
    def obj_path(self) -> Path:
        return self.model_dir / MODEL_OBJ


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(e for e in path.iterdir() if e.is_dir())
    except PermissionError:
        raise CmaError(f"{path}: permission denied while listing the folder") from None


class ShapeNetTree:
    """A validated ShapeNetCore.v2 root: its taxonomy and the synset folders it holds."""

    def __init__(self, root: Path, taxonomy: Taxonomy, synset_ids: list[str]):
        self.root = root
        self.taxonomy = taxonomy
        self.synset_ids = synset_ids

    @classmethod
    def open(cls, path: str | os.PathLike) -> "ShapeNetTree":
        root = Path(path).expanduser()
        if not root.exists():
            raise CmaError(f"{root}: no such folder; expected a ShapeNetCore.v2 root holding {LAYOUT}")
        if root.is_file():
            what = "a zip archive; extract it and pass the extracted folder" if root.suffix == ".zip" else (
                f"a file; expected the ShapeNetCore.v2 root folder holding {LAYOUT}")
            raise CmaError(f"{root}: is {what}")
        root = root.resolve()
        children = _subdirs(root)
        synsets = [d.name for d in children if SYNSET_ID_RE.match(d.name)]
        if not synsets:
            raise CmaError(_layout_hint(root, children))
        return cls(root, Taxonomy.for_root(root), synsets)

    @staticmethod
    def looks_like(root: Path) -> bool:
        """8-digit folders, one of the first holding <model>/models/model_normalized.obj (a folder of
        date-named folders is not a ShapeNet tree)."""
        try:
            synsets = [d for d in _subdirs(root) if SYNSET_ID_RE.match(d.name)][:8]
            return any((m / MODEL_OBJ).is_file() for d in synsets for m in _subdirs(d)[:20])
        except CmaError:
            return False

    def models(self, synset_ids: list[str] | None = None) -> list[ModelRef]:
        """Every model folder of the given synsets (all when None), sorted by (synset, model)."""
        wanted = self.synset_ids if synset_ids is None else [s for s in synset_ids if s in self.synset_ids]
        refs = []
        for sid in wanted:
            for d in _subdirs(self.root / sid):
                refs.append(ModelRef(sid, d.name, d))
        return refs


def _layout_hint(root: Path, children: list[Path]) -> str:
    expected = f"expected a ShapeNetCore.v2 root holding {LAYOUT}"
    if (root / MODEL_OBJ).is_file():
        return f"{root}: is a single model folder; {expected} (two levels up)"
    if SYNSET_ID_RE.match(root.name) and any((c / MODEL_OBJ).is_file() for c in children[:50]):
        return f"{root}: is a synset folder; pass its parent and --categories {root.name}"
    try:
        zips = sorted(p.name for p in root.glob("*.zip") if SYNSET_ID_RE.match(p.stem))
    except PermissionError:
        zips = []
    if zips:
        return f"{root}: holds synset archives ({', '.join(zips[:3])}{', ...' if len(zips) > 3 else ''}) but no synset folders; extract them first"
    for c in children:
        try:
            if any(SYNSET_ID_RE.match(g.name) and g.is_dir() for g in c.iterdir()):
                return f"{root}: no synset folders here, but {c} has them; pass that folder"
        except PermissionError:
            continue
    return f"{root}: no 8-digit synset folders found; {expected}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inspect_model(ref: ModelRef, category: str, split: str, root: Path | None = None) -> ManifestRow:
    """Build the manifest row of one model; defects become problems, never exceptions."""
    row = ManifestRow(model_id=ref.model_id, synset_id=ref.synset_id, category=category, split=split,
                      obj_path=str(ref.obj_path))
    problems: list[Problem] = []
    try:
        data = ref.obj_path.read_bytes()
    except FileNotFoundError:
        problems.append(error("obj_missing", f"no {MODEL_OBJ} in {ref.model_dir.name}"))
        data = None
    except OSError as exc:
        problems.append(error("obj_unreadable", exc.strerror or str(exc)))
        data = None
    if data is not None:
        row.obj_bytes = len(data)
        row.obj_sha256 = _sha256(data)
        info = inspect_obj(data)
        row.n_vertices, row.n_faces = info.n_vertices, info.n_faces
        problems += info.problems
        refs = inspect_materials(ref.obj_path.parent, info.mtllibs, info.materials_used, root)
        row.n_materials, row.n_transparent = refs.n_materials, refs.n_transparent
        row.textures, row.textures_missing = refs.textures, refs.textures_missing
        row.n_meshes, row.n_triangles = (1 if info.n_faces else 0), info.n_triangles
        problems += refs.problems
    problems += _inspect_json(ref)
    finish(row, problems)
    return row


def _inspect_json(ref: ModelRef) -> list[Problem]:
    path = ref.obj_path.with_suffix(".json")
    if not path.is_file():
        return [warn("json_missing", f"no {path.name}")] if ref.obj_path.is_file() else []
    try:
        json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [warn("json_invalid", f"{path.name}: {exc.__class__.__name__}")]
    return []


class ShapeNetSource:
    """ShapeNetCore.v2 as a :class:`~cma_builder.source.base.Source`: category id = synset, object
    id = model folder, the OBJ imported in its own frame (Y up, already normalised: no transform);
    labels are the 55 top-level synsets of the bundled taxonomy, as before other collections."""

    layout = "shapenet"

    def __init__(self, tree: ShapeNetTree):
        self.tree = tree
        self.root = tree.root

    @classmethod
    def open(cls, path: str | os.PathLike, up_axis: str | None = None) -> "ShapeNetSource":
        if up_axis not in (None, "+y"):
            raise CmaError("--up-axis: ShapeNetCore.v2 is +y up in its own frame, which the dataset keeps")
        return cls(ShapeNetTree.open(path))

    @staticmethod
    def looks_like(root: Path) -> bool:
        return ShapeNetTree.looks_like(root)

    def categories(self) -> list[tuple[str, str]]:
        bundled = Taxonomy.bundled()
        return [(s, bundled.category_name(s)) for s in bundled.top_level_ids]

    def present_categories(self) -> list[str]:
        return list(self.tree.synset_ids)

    def resolve(self, names: list[str]) -> list[str]:
        return self.tree.taxonomy.resolve(names, self.tree.synset_ids)

    def objects(self, category_ids: list[str] | None = None):
        for ref in self.tree.models(category_ids):
            yield self.object(ref)

    def object(self, ref: ModelRef) -> SourceObject:
        return SourceObject(ref.synset_id, ref.model_id, ref.obj_path, "obj",
                            self.tree.taxonomy.category_name(ref.synset_id), None, "+y", normalise=False)

    def describe(self, obj: SourceObject, split: str) -> ManifestRow:
        ref = ModelRef(obj.category_id, obj.object_id, obj.path.parent.parent)
        return inspect_model(ref, obj.category, split, self.root)

    def summary_name(self) -> str:
        return f"ShapeNet root: {self.root}  (taxonomy: {self.tree.taxonomy.source})"
