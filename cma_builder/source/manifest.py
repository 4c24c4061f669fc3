"""The scan manifest: one CSV row per model, written atomically.

List-valued columns (textures, textures_missing, problems, notes) are joined with ';'.
Every column is documented in docs/MANIFEST.md.
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

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
    obj_path: str = ""  # absolute path of models/model_normalized.obj
    obj_bytes: int = 0
    obj_sha256: str = ""
    n_vertices: int = 0
    n_faces: int = 0
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
            if fh.readline().strip() != ",".join(COLUMNS):
                raise CmaError(f"{path}: exists and is not a cma-build manifest; refusing to overwrite it")


def write_manifest(rows: list[ManifestRow], path: Path) -> Path:
    """Write rows sorted by (synset, model) to ``path`` atomically (complete file or none)."""
    path = Path(path)
    check_target(path)
    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in sorted(rows, key=lambda r: r.key):
            writer.writerow([_cell(getattr(row, c)) for c in COLUMNS])
    return path


def read_manifest(path: Path) -> list[ManifestRow]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise CmaError(f"{path}: not a cma-build manifest (missing columns: {', '.join(sorted(missing))})")
            rows = []
            for rec in reader:
                values = {}
                for c in COLUMNS:
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
