"""``cma-build export``: the dataset in the formats other codebases read.

Each format is one module with an :class:`Exporter` registered in ``FORMATS``. The driver here
selects objects, checks the output folder before any work, writes each object under
``OUT/.staging`` and renames it into place (an object's files are complete or absent), skips
objects already exported (a re-run resumes), and lets the format write its lists at the end.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cma_builder import faults
from cma_builder.atomic import atomic_write
from cma_builder.errors import CmaError
from cma_builder.paths import check_inside, refuse_inside
from cma_builder.progress import progress
from cma_builder.format import DatasetReader, ObjectRef
from cma_builder.source.splits import SPLIT_NAMES
from cma_builder.format.schema import resolve_categories

MARKER = "cma-export.json"
LOCK = ".lock"
FORMATS: dict[str, type["Exporter"]] = {}


def register(cls: type["Exporter"]) -> type["Exporter"]:
    FORMATS[cls.name] = cls
    return cls


class Exporter:
    """One output format. ``options`` are the format's settings that change file contents; an
    export folder is only resumed with the same ones."""

    name = ""
    summary = ""
    arrays: tuple[str, ...] = ()  # what write() reads

    def __init__(self, reader: DatasetReader, options: dict):
        self.reader = reader
        self.options = options

    def check(self) -> None:
        """Refuse options this dataset cannot satisfy, before any work (raise CmaError)."""

    def target(self, obj: ObjectRef) -> str:
        """Path of the object's file or folder, relative to the export folder."""
        raise NotImplementedError

    def write(self, obj: ObjectRef, arrays: dict, path: Path) -> None:
        """Write the object's file or folder at ``path`` (a fresh staging path)."""
        raise NotImplementedError

    def finish(self, out: Path, exported: list[ObjectRef]) -> list[Path]:
        """Write files that list every exported object; returns their paths."""
        return []

    def list_files(self) -> list[str]:
        """Paths (relative to the export folder) that :meth:`finish` writes."""
        return []


@dataclass
class ExportSummary:
    out: Path
    format: str
    selected: int = 0
    written: int = 0
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    lists: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def select(reader: DatasetReader, splits: list[str] | None, categories: list[str] | None,
           limit: int | None) -> list[ObjectRef]:
    """Done objects of the index filtered by split and category; ``limit`` taken round-robin
    across categories (as ``render --limit``)."""
    objs = reader.objects()
    if splits:
        bad = [s for s in splits if s not in SPLIT_NAMES]
        if bad:
            raise CmaError(f"unknown split '{bad[0]}': expected {', '.join(SPLIT_NAMES)}")
        objs = [o for o in objs if o.split in splits]
    if categories:
        present = sorted({o.synset_id for o in reader.objects()})
        wanted = resolve_categories(reader.attrs, categories, present)
        objs = [o for o in objs if o.synset_id in wanted]
    if limit is not None:
        if limit < 1:
            raise CmaError(f"--limit must be at least 1 (got {limit})")
        by_cat: dict[str, list[ObjectRef]] = {}
        for o in objs:
            by_cat.setdefault(o.synset_id, []).append(o)
        queues, objs = list(by_cat.values()), []
        while len(objs) < limit and any(queues):
            for q in queues:
                if q and len(objs) < limit:
                    objs.append(q.pop(0))
    return objs


BOOKKEEPING = {MARKER, LOCK, ".staging"}  # what an export folder holds besides exported objects


def prepare_out(out: Path, marker: dict) -> None:
    """Create the export folder or check that it holds an export with the same ``marker``
    (format, source settings, options): anything else is refused before any work. A folder that
    holds no exported object yet takes the new marker (a failed first try can be re-run with
    other options)."""
    if out.exists() and not out.is_dir():
        raise CmaError(f"{out}: is a file; expected a folder for the export")
    path = out / MARKER
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if entries - BOOKKEEPING:
        if not path.is_file():
            raise CmaError(f"{out}: folder is not empty and is not a cma-build export; choose another --out")
        try:
            old = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CmaError(f"{path}: unreadable ({e}); choose another --out") from None
        for key in ("format", "dataset_settings_hash", "options"):
            if old.get(key) != marker[key]:
                what = {"dataset_settings_hash": "dataset render settings"}.get(key, key)
                raise CmaError(f"{out}: holds an export with other {what} ({old.get(key)!r}, now {marker[key]!r}); "
                               "choose another --out")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            json.dump(marker, fh, indent=1)
    except OSError as e:
        raise CmaError(f"{out}: cannot write there ({e.strerror or e})") from None


@contextmanager
def locked(out: Path):
    """Hold DIR/.lock (flock, released by the kernel even on SIGKILL) for the export: a second
    export into the same folder is refused instead of racing this one."""
    fh = open(out / LOCK, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CmaError(f"{out}: another cma-build export is writing here; wait for it or choose another --out") \
                from None
        yield
    finally:
        fh.close()


def export(dataset: str | os.PathLike, fmt: str, out: str | os.PathLike, options: dict | None = None,
           splits: list[str] | None = None, categories: list[str] | None = None, limit: int | None = None,
           show_progress: bool = True) -> ExportSummary:
    """Export the selected objects of ``dataset`` in format ``fmt`` into ``out`` (resumable)."""
    if fmt not in FORMATS:
        raise CmaError(f"unknown format '{fmt}': expected one of {', '.join(FORMATS)}")
    reader = DatasetReader.open(dataset)
    exporter = FORMATS[fmt](reader, dict(options or {}))
    exporter.check()
    objs = select(reader, splits, categories, limit)
    if not objs:
        have = Counter(o.split for o in reader.objects())
        raise CmaError("no objects selected" + (f" (the dataset has {', '.join(f'{n} {s}' for s, n in have.items())})"
                                                if have else " (the dataset has no rendered objects)"))
    reader.verify(objs)  # a damaged dataset or an index whose ids are not the shards': refused before any write
    out = refuse_inside(out, reader.root)
    # every path this export may write stays in --out, links followed (checked before the first write)
    check_inside(out, [*BOOKKEEPING, *(exporter.target(o) for o in objs), *exporter.list_files()])
    marker = {"format": fmt, "dataset": str(reader.root), "dataset_settings_hash": reader.attrs["settings_hash"],
              "options": exporter.options}
    prepare_out(out, marker)
    out = out.resolve()
    with locked(out):
        prepare_out(out, marker)  # again under the lock: another run may have started it meanwhile
        return _export(reader, exporter, objs, out, fmt, show_progress)


def _export(reader: DatasetReader, exporter: Exporter, objs: list[ObjectRef], out: Path, fmt: str,
            show_progress: bool) -> ExportSummary:
    summary = ExportSummary(out, fmt, selected=len(objs))
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)  # objects a killed run left half-written (we hold the lock)
    with progress(objs, desc=f"export {fmt}", unit="obj", enabled=show_progress) as bar:
        for obj in bar:
            rel = exporter.target(obj)
            final = out / rel
            if final.exists():
                summary.already += 1
                continue
            tmp = staging / rel.replace("/", "__")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            try:
                exporter.write(obj, reader.load(obj, list(exporter.arrays)), tmp)
                faults.in_export(obj.model_id)  # test hook: die with the object written but not committed
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)  # the commit
            except CmaError as e:
                summary.failed.append((obj.key, str(e)))
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
                continue
            except OSError as e:
                raise CmaError(f"{final}: cannot write ({e.strerror or e}); {_objects(summary.written)} written this "
                               "run are kept, run the same command again to go on") from None
            summary.written += 1
    shutil.rmtree(staging, ignore_errors=True)
    exported = [o for o in reader.objects() if (out / exporter.target(o)).exists()]
    if exported:  # a folder without objects stays free to take other options
        summary.lists = exporter.finish(out, exported)
    summary.notes = getattr(exporter, "notes", [])
    return summary


def _objects(n: int) -> str:
    return f"{n} object" + ("" if n == 1 else "s")


def summary_lines(s: ExportSummary) -> list[str]:
    """What was written (stdout)."""
    lines = [f"Exported {_objects(s.written)} as {s.format} ({s.already} already there) of {s.selected} selected: "
             f"{s.out}"]
    return lines + [f"  {p}" for p in s.lists]


def problem_lines(s: ExportSummary) -> list[str]:
    """Notes and failures (stderr)."""
    lines = list(s.notes)
    if s.failed:
        lines.append(f"{_objects(len(s.failed))} failed (the others are written):")
        lines += [f"  {key}: {why}" for key, why in s.failed]
    return lines


from cma_builder.exporters import colmap, nerf, ply, shapenet55  # noqa: E402,F401  (register the formats)
