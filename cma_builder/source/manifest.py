"""The scan manifest: one CSV row per model, written atomically.

List-valued columns (textures, textures_missing, problems, notes) are joined with ';'.
Every column is documented in docs/MANIFEST.md.
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cma_builder.atomic import atomic_write
from cma_builder.errors import CmaError

LIST_SEP = ";"


@dataclass
class ManifestRow:
    model_id: str
    synset_id: str
    category: str
    split: str
    status: str = "ok"  # ok | warn | error (worst problem severity)
    obj_path: str = ""  # absolute path of the source file (ShapeNet: models/model_normalized.obj)
    obj_bytes: int = 0
    obj_sha256: str = ""
    n_vertices: int = 0
    n_faces: int = 0
    format: str = "obj"  # obj | glb | gltf | ply | stl | off
    up_axis: str = "+y"  # the file's up axis, turned to the dataset's +Y at render
    n_meshes: int = 0
    n_triangles: int = 0  # after triangulation; points and lines excluded
    n_animations: int = 0
    n_armatures: int = 0
    n_materials: int = 0
    n_transparent: int = 0  # materials with d < 1
    textures: list[str] = field(default_factory=list)  # as referenced by the MTL
    textures_missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "code: detail" (error and warn)
    notes: list[str] = field(default_factory=list)  # harmless quirks, "code: detail"

    @property
    def key(self) -> tuple[str, str]:
        return (self.synset_id, self.model_id)


COLUMNS = [f.name for f in dataclasses.fields(ManifestRow)]
_ADDED = {"format", "up_axis", "n_meshes", "n_triangles", "n_animations", "n_armatures"}  # absent before 0.2
_LIST_COLUMNS = {f.name for f in dataclasses.fields(ManifestRow) if f.type == "list[str]"}
_INT_COLUMNS = {f.name for f in dataclasses.fields(ManifestRow) if f.type == "int"}


def _cell(value) -> str:
    if isinstance(value, list):
        return LIST_SEP.join(str(v).replace(LIST_SEP, ",") for v in value)
    return str(value)


def check_target(path: Path) -> None:
    """Fail early if a manifest cannot be written to ``path``; never clobber a file that is
    not an earlier manifest."""
    path = Path(path)
    if path.is_dir():
        raise CmaError(f"{path}: is a folder; expected a manifest file name such as {path / 'manifest.csv'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CmaError(f"{path}: folder {parent} does not exist")
    if path.exists():
        with open(path, encoding="utf-8", errors="replace") as fh:
            if not fh.readline().startswith("model_id,synset_id,"):
                raise CmaError(f"{path}: exists and is not a cma-build manifest; refusing to overwrite it")


def write_manifest(rows: Iterable[ManifestRow], path: Path, sort: bool = True) -> Path:
    """Write rows (sorted by (synset, model) unless ``sort`` is False: then as they come, which lets
    a scan stream them) to ``path`` atomically (complete file or none)."""
    path = Path(path)
    check_target(path)
    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in (sorted(rows, key=lambda r: r.key) if sort else rows):
            writer.writerow([_cell(getattr(row, c)) for c in COLUMNS])
    return path


def read_manifest(path: Path) -> list[ManifestRow]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(COLUMNS) - _ADDED - set(reader.fieldnames or [])
            if missing:
                raise CmaError(f"{path}: not a cma-build manifest (missing columns: {', '.join(sorted(missing))})")
            rows = []
            for rec in reader:
                values = {}
                for c in COLUMNS:
                    if c not in rec:
                        continue  # a column added later: its default
                    cell = rec[c]
                    if c in _LIST_COLUMNS:
                        values[c] = [v for v in cell.split(LIST_SEP) if v]
                    elif c in _INT_COLUMNS:
                        values[c] = int(cell)
                    else:
                        values[c] = cell
                rows.append(ManifestRow(**values))
            return rows
    except OSError as exc:
        raise CmaError(f"{path}: cannot read manifest ({exc.strerror})") from None
    except ValueError as exc:
        raise CmaError(f"{path}: malformed manifest ({exc})") from None
