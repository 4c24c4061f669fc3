"""``cma-build validate``: prove a dataset's point-to-pixel mappings with numbers.

Structure (index vs shards, array shapes) is checked for every object; the per-object checks
of rules.py run on every done object or a random ``sample`` of them, in parallel processes.
Each check yields values (per view or per object) compared with a threshold; the report gives
median / p99 / max per check, the worst offenders and every failure (object, view, check).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cma_builder.atomic import atomic_write, check_output_file, ensure_parent
from cma_builder.checks.rules import CHECKS, mesh_values, object_values
from cma_builder.errors import CmaError
from cma_builder.progress import progress
from cma_builder.format import DatasetReader, ObjectRef, ref
from cma_builder.format.integrity import shard_problems
from cma_builder.render.settings import FORMAT_VERSION
from cma_builder.source import open_source
from cma_builder.source.base import SourceObject

WORST = 5  # offenders listed per check


def parse_thresholds(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """['mapping.pixel_error=0.1', ...] -> {name: value} over the defaults."""
    out = {name: c.default for name, c in CHECKS.items()}
    for item in items:
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in CHECKS:
            raise CmaError(f"--threshold '{item}': unknown check '{name}'; see cma-build validate --list-checks")
        try:
            out[name] = float(value)
        except ValueError:
            raise CmaError(f"--threshold '{item}': expected CHECK=NUMBER, e.g. mapping.pixel_error=0.1") from None
        # every check's value is a count, distance, ratio or fraction (never negative): a negative or NaN limit
        # could never pass; an infinite upper limit turns a check off, an infinite lower limit fails every object
        if not out[name] >= 0 or (CHECKS[name].bound == "min" and out[name] == float("inf")):
            raise CmaError(f"--threshold '{item}': the limit must be a finite number >= 0"
                           + (" (or inf to turn this upper limit off)" if CHECKS[name].bound == "max" else ""))
    return out


@dataclass
class Report:
    dataset: Path
    thresholds: dict[str, float]
    objects_in_index: int = 0
    objects_done: int = 0
    objects_checked: int = 0
    sampled: bool = False
    geometry: bool = False
    seconds: float = 0.0
    note: str = ""  # about the dataset as a whole, e.g. rendered by an older pipeline
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    worst: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    failures: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def add(self, obj: dict, values: list[tuple]) -> None:
        for check_name, view, value, detail in values:
            check = CHECKS[check_name]
            value = float(value)
            self.values[check_name].append(value)
            entry = dict(obj, view=view, value=value)
            if detail:
                entry["detail"] = detail
            if not check.passes(value, self.thresholds[check_name]):
                self.failures.append(dict(entry, check=check_name, threshold=self.thresholds[check_name]))
            worst = self.worst[check_name]
            if len(worst) < WORST or _badness(check, value) > _badness(check, worst[-1]["value"]):
                worst.append(entry)
                worst.sort(key=lambda e: -_badness(check, e["value"]))
                del worst[WORST:]

    def check_summary(self) -> dict[str, dict]:
        out = {}
        for name, check in CHECKS.items():
            vals = np.asarray(self.values.get(name, []), dtype=np.float64)
            failed = sum(1 for f in self.failures if f["check"] == name)
            entry = {"value": check.value, "unit": check.unit, "bound": check.bound,
                     "threshold": self.thresholds[name], "count": int(vals.size), "failed": failed}
            if vals.size:
                finite = vals[np.isfinite(vals)]
                tail = 1 if check.bound == "min" else 99
                entry.update(mean=float(finite.mean()) if finite.size else None, median=_stat(finite, 50),
                             **{f"p{tail}": _stat(finite, tail)},
                             worst=float(vals.min() if check.bound == "min" else vals.max())
                             if finite.size == vals.size else float("nan"),
                             offenders=self.worst.get(name, []))
            out[name] = entry
        return out

    def to_json(self) -> dict:
        return {"dataset": str(self.dataset), "passed": self.passed, "objects_in_index": self.objects_in_index,
                "objects_done": self.objects_done, "objects_checked": self.objects_checked, "sampled": self.sampled,
                "geometry_checked": self.geometry, "seconds": round(self.seconds, 2), "note": self.note,
                "checks": self.check_summary(), "failures": self.failures}


def _badness(check, value: float) -> float:
    if not np.isfinite(value):
        return float("inf")
    return value if check.bound == "max" else -value


def _stat(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if x.size else None


# --- structure: the index against the shards ------------------------------------------------
def structure(reader: DatasetReader, rows: list[dict], report: Report) -> list[ObjectRef]:
    """Check index.csv against the shards on disk and every shard's arrays against the documented
    shapes and dtypes. Returns the objects whose arrays can be loaded."""
    spec = reader.attrs["arrays"]
    shards: dict[str, dict] = {}  # name -> {"keys": [...], "problems": [...]}
    for name in reader.shard_names():
        keys, problems = shard_problems(reader.root, name, spec)  # the rules every reader applies
        shards[name] = {"keys": keys or [], "problems": problems}

    where: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, s in shards.items():
        for row, key in enumerate(s["keys"]):
            where[key].append((name, row))
    index_done: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] == "done":
            index_done[f"{r['synset_id']}/{r['model_id']}"].append(r)
    by_key = {f"{r['synset_id']}/{r['model_id']}": r for r in rows}

    loadable = []
    for key in sorted(set(index_done) | set(where)):
        r = by_key.get(key, {})
        obj = {"object": key, "category": r.get("category", "")}
        problem = None
        entries = index_done.get(key, [])
        places = where.get(key, [])
        if len(entries) > 1:
            problem = f"listed {len(entries)} times in index.csv"
        elif len(places) > 1:
            problem = "stored in several shards: " + ", ".join(f"{s} row {i}" for s, i in places)
        elif not entries:
            s, i = places[0]
            problem = f"in shard {s} row {i}, but index.csv says {r.get('status', 'nothing')!r}"
        else:
            e = entries[0]
            if e["shard"] not in shards:
                problem = f"shard {e['shard']} missing (index.csv row points to it)"
            elif not places or places[0] != (e["shard"], int(e["row"])):
                found = f"{places[0][0]} row {places[0][1]}" if places else "no shard"
                problem = f"index.csv says {e['shard']} row {e['row']}, found in {found}"
        report.add(obj, [("structure.index", None, 1.0 if problem else 0.0, problem)])
        if problem is None:
            s = shards[entries[0]["shard"]]
            report.add(obj, [("structure.arrays", None, float(len(s["problems"])),
                              "; ".join(s["problems"][:3]) or None)])
            if not s["problems"]:
                loadable.append(ref(entries[0]))
    return loadable


# --- per-object checks, in worker processes ------------------------------------------------
_reader: DatasetReader | None = None
_sources: dict[tuple[str, str], SourceObject] | None = None
_source_root: Path | None = None


def _init(root: str, sources: dict | None, source_root: Path | None = None) -> None:
    global _reader, _sources, _source_root
    _reader = DatasetReader.open(root)
    _sources = sources
    _source_root = source_root


def source_mesh(obj: SourceObject, source_to_world: np.ndarray, root: Path | None = None):
    """A ray caster of the object's source file read without Blender, in the dataset frame
    (:func:`~cma_builder.checks.source_mesh.dataset_mesh`)."""
    from cma_builder.checks.source_mesh import dataset_mesh
    from cma_builder.geometry.raycast import MeshRaycaster

    return MeshRaycaster(*dataset_mesh(obj, source_to_world, root))


def _check_one(obj: ObjectRef) -> list[tuple]:
    try:
        a = _reader.load(obj)
        values = object_values(a, _reader.settings)
    except Exception as exc:
        return [("structure.arrays", None, float("nan"), f"unreadable ({exc.__class__.__name__}: {exc})")]
    if _sources is not None:
        src = _sources.get((obj.synset_id, obj.model_id))
        if src is None or not src.path.is_file():
            where = src.path if src is not None else f"{obj.synset_id}/{obj.model_id}"
            values.append(("geometry.point_to_mesh", None, float("nan"), f"source file not found: {where}"))
        else:
            try:
                mesh = source_mesh(src, a.get("source_to_world", np.eye(4)), _source_root)
                values += mesh_values(a, mesh, _reader.settings)
            except Exception as exc:
                values.append(("geometry.point_to_mesh", None, float("nan"), f"{exc.__class__.__name__}: {exc}"))
    return values


def open_collection(reader: DatasetReader, source: str | os.PathLike, layout: str | None = None):
    """The collection ``source`` a dataset was rendered from, of the dataset's recorded layout unless
    ``layout`` says otherwise (a clear error for a wrong root, before any work)."""
    return open_source(source, layout or reader.attrs.get("source", {}).get("layout", "shapenet"))


def source_objects(collection, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], SourceObject]:
    """The collection's scanned objects of the (synset id, model id) keys ``wanted``."""
    sources = {o.key: o for o in collection.objects() if o.key in wanted}
    if wanted and not sources:
        raise CmaError(f"{collection.root}: holds none of the dataset's objects as a {collection.layout} collection "
                       "(pass the collection the dataset was rendered from, or its --layout)")
    return sources


def validate(path: str | os.PathLike, sample: int | None = None, seed: int = 0, source: str | None = None,
             thresholds: dict[str, float] | None = None, workers: int | None = None,
             show_progress: bool = True, layout: str | None = None) -> Report:
    """Check the dataset at ``path``; with ``source`` (the collection it was rendered from, of the
    dataset's layout unless ``layout`` says otherwise) also against the source files."""
    start = time.perf_counter()
    if sample is not None and sample < 1:
        raise CmaError(f"--sample must be at least 1, got {sample}")
    if seed < 0:
        raise CmaError(f"--seed must be at least 0, got {seed}")
    if workers is not None and workers < 1:
        raise CmaError(f"--workers must be at least 1, got {workers}")
    reader = DatasetReader.open(path)
    collection = None
    if source is not None:  # clear errors for a wrong root, before any work
        collection = open_collection(reader, source, layout)
    rows = reader.index_rows()
    report = Report(reader.root, thresholds or parse_thresholds([]), geometry=source is not None)
    version = reader.attrs["settings"].get("format_version", 0)
    if version < FORMAT_VERSION:
        report.note = (f"rendered by an older cma-build (pipeline format {version}, now {FORMAT_VERSION}): its "
                       "fused_visible is the 4-pixel depth test and its RGB the old light rig, so geometry.visibility "
                       "and images.saturated may fail; cma-build render --force renders it again")
    report.objects_in_index = len(rows)
    report.objects_done = sum(r["status"] == "done" for r in rows)
    if not report.objects_done and not reader.shard_names():
        raise CmaError(f"{reader.root}: nothing to validate (no rendered objects; index.csv has no row with status done)")
    objs = structure(reader, rows, report)
    if sample is not None and sample < len(objs):
        pick = np.random.default_rng(seed).choice(len(objs), sample, replace=False)
        objs = sorted((objs[i] for i in pick), key=lambda o: (o.shard, o.row))
        report.sampled = True
    report.objects_checked = len(objs)
    sources = None
    if collection is not None:
        sources = source_objects(collection, {(o.synset_id, o.model_id) for o in objs})
    workers = max(1, min(workers or os.cpu_count() or 1, len(objs) // 2 or 1))
    bar = progress(desc="validate", unit="obj", total=len(objs), enabled=show_progress)
    if workers == 1:
        _init(str(reader.root), sources, collection.root if collection is not None else None)
        results = map(_check_one, objs)
        pool = None
    else:  # spawn: zarr's I/O thread and open3d do not survive fork
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers start with Ctrl-C ignored
        try:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init,
                                       initargs=(str(reader.root), sources,
                                                 collection.root if collection is not None else None))
            results = pool.map(_check_one, objs, chunksize=max(1, min(8, len(objs) // (4 * workers))))
        finally:
            signal.signal(signal.SIGINT, previous)
    try:
        for obj, values in zip(objs, results):
            report.add({"object": obj.key, "category": obj.category}, values)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    report.seconds = time.perf_counter() - start
    return report


def write_report(report: Report, path: Path) -> Path:
    path = check_output_file(path, "--report", "report.json")
    with atomic_write(ensure_parent(path)) as fh:
        json.dump(report.to_json(), fh, indent=1, allow_nan=True)
    return path


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 0.01:
        return f"{x:.2e}"
    return f"{x:.4g}"


def summary_lines(report: Report, max_failures: int = 20) -> list[str]:
    lines = [f"Validated {report.objects_checked} of {report.objects_done} done objects"
             + (" (random sample)" if report.sampled else "") + f" in {report.dataset} ({report.seconds:.1f} s); "
             f"structure checked for all {report.objects_in_index} index rows"]
    if report.note:
        lines.append(f"Note: {report.note}")
    header = f"{'check':<24} {'values':>7} {'median':>9} {'p99/p1':>9} {'worst':>9} {'limit':>10}  {'unit':<10} result"
    lines += [header, "-" * len(header)]
    for name, s in report.check_summary().items():
        if not s["count"]:
            if name.startswith("geometry.") and not report.geometry:
                lines.append(f"{name:<24} {'':>7} not run: pass --source to compare with the source meshes")
            continue
        tail = s.get("p1", s.get("p99"))
        limit = ("<= " if s["bound"] == "max" else ">= ") + _fmt(s["threshold"])
        result = "ok" if not s["failed"] else f"FAILED {s['failed']}"
        lines.append(f"{name:<24} {s['count']:>7} {_fmt(s.get('median')):>9} {_fmt(tail):>9} {_fmt(s.get('worst')):>9} "
                     f"{limit:>10}  {s['unit']:<10} {result}")
    vis = report.check_summary()["geometry.visibility"]
    if vis["count"]:
        lines.append(f"fused_visible agrees with open3d ray casting of the source meshes on {vis['mean']:.4%} of "
                     f"(point, view) pairs (mean over {vis['count']} views)")
    if report.passed:
        lines.append(f"PASSED: every check within its limit on {report.objects_checked} objects")
        return lines
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (object, check) -> failures
    for f in report.failures:
        groups[(f["object"], f["check"])].append(f)
    objects = {f["object"] for f in report.failures}
    lines.append(f"FAILED: {len(report.failures)} values in {len(objects)} objects (object, check, views, worst value):")
    for (obj, name), fs in list(groups.items())[:max_failures]:
        check = CHECKS[name]
        worst = max(fs, key=lambda f: _badness(check, f["value"]))
        views = [f["view"] for f in fs if f["view"] is not None]
        where = f"views {_ranges(views)}" if views else "object"
        lines.append(f"  {obj} ({fs[0]['category'] or '?'}) {name} {where}: {_fmt(worst['value'])} {check.unit}".rstrip()
                     + f" (limit {'<=' if check.bound == 'max' else '>='} {_fmt(worst['threshold'])})"
                     + (f"  {worst['detail']}" if worst.get("detail") else ""))
    if len(groups) > max_failures:
        lines.append(f"  ... {len(groups) - max_failures} more (object, check) pairs in the JSON report")
    return lines


def _ranges(views: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    views = sorted(set(views))
    parts, start = [], None
    for i, v in enumerate(views):
        if start is None:
            start = v
        if i + 1 == len(views) or views[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(parts)


def check_list_lines() -> list[str]:
    lines = [f"{'check':<24} {'default limit':<16} value"]
    for name, c in CHECKS.items():
        limit = ("<= " if c.bound == "max" else ">= ") + _fmt(c.default) + (f" {c.unit}" if c.unit else "")
        lines.append(f"{name:<24} {limit:<16} {c.value}")
    return lines
