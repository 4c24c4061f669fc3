"""``cma-build scan``: inspect every object of a collection (no Blender) and write the manifest.

Rows are written as they come (in (category, id) order) and tallied for the summary, so a scan of
a 100,000-object collection holds its object list, not its rows (``keep_rows`` keeps them too).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from cma_builder.atomic import check_output_file, ensure_parent
from cma_builder.errors import CmaError
from cma_builder.progress import progress
from cma_builder.source import open_source
from cma_builder.source.base import Source, SourceObject
from cma_builder.source.manifest import ManifestRow, check_target, write_manifest
from cma_builder.source.splits import SPLIT_NAMES, SplitSpec

PARALLEL_MIN_MODELS = 64  # below this, worker start-up costs more than it saves
MAX_LISTED = 1000  # problem rows kept for the summary


@dataclass
class Tally:
    """What the summary prints, counted row by row."""

    status: dict[str, Counter] = field(default_factory=dict)  # category id -> status and split counts
    codes: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    errors: int = 0
    warnings: int = 0
    bad: list[ManifestRow] = field(default_factory=list)  # the first MAX_LISTED rows with problems
    total: int = 0

    def add(self, row: ManifestRow) -> None:
        c = self.status.setdefault(row.synset_id, Counter())
        c[row.status] += 1
        c["split:" + row.split] += 1
        self.total += 1
        self.notes.update(n.split(":")[0] for n in row.notes)
        if row.status != "ok":
            self.errors += row.status == "error"
            self.warnings += row.status == "warn"
            self.codes.update(p.split(":")[0] for p in row.problems)
            if len(self.bad) < MAX_LISTED:
                self.bad.append(row)


@dataclass
class ScanResult:
    source: Source
    category_ids: list[str]  # the selected categories (in order)
    rows: list[ManifestRow]  # empty unless keep_rows
    tally: Tally
    manifest: Path | None
    seconds: float


def split_of(obj: SourceObject, spec: SplitSpec) -> str:
    """The collection's official split, else the one assigned by id."""
    return obj.split or spec.assign(obj.object_id)


def select_models(source: Source, category_ids: list[str], limit: int | None,
                  keep: Callable[[SourceObject], bool] | None = None) -> list[SourceObject]:
    """Objects of the given categories (those ``keep`` accepts); ``limit`` takes them round-robin
    across categories (sorted by id within each), so a small limit still covers every category."""
    if limit is None:
        return [o for o in source.objects(category_ids) if keep is None or keep(o)]
    per = [[o for o in source.objects([cid]) if keep is None or keep(o)] for cid in category_ids]
    out: list[SourceObject] = []
    depth = 0
    while len(out) < limit and any(depth < len(objs) for objs in per):
        for objs in per:
            if depth < len(objs) and len(out) < limit:
                out.append(objs[depth])
        depth += 1
    return out


_SOURCE: Source | None = None


def _init(source: Source) -> None:
    global _SOURCE
    _SOURCE = source


def inspect_safely(job: tuple[SourceObject, str], source: Source | None = None) -> ManifestRow:
    obj, split = job
    try:
        return (source or _SOURCE).describe(obj, split)
    except Exception as exc:  # a defect we did not foresee must not stop a 100k-object scan
        return ManifestRow(model_id=obj.object_id, synset_id=obj.category_id, category=obj.category, split=split,
                           status="error", obj_path=str(obj.path), format=obj.fmt, up_axis=obj.up_axis,
                           problems=[f"inspect_failed: {exc.__class__.__name__}: {exc}"])


def scan(path: str | os.PathLike, out: str | os.PathLike | None = None, categories: list[str] | None = None,
         limit: int | None = None, workers: int | None = None, show_progress: bool = True,
         layout: str | None = None, up_axis: str | None = None, keep_rows: bool = True) -> ScanResult:
    """Scan the collection at ``path`` (``layout`` detected when None); with ``out``, write the
    manifest there (atomically)."""
    start = time.perf_counter()
    if limit is not None and limit < 1:
        raise CmaError(f"--limit must be at least 1, got {limit}")
    if workers is not None and workers < 1:
        raise CmaError(f"--workers must be at least 1, got {workers}")
    if out is not None:
        check_output_file(out, "--out", "manifest.csv")  # its folder may be created (after the scan)
        if Path(out).parent.is_dir():
            check_target(Path(out))  # never clobber a file that is not an earlier manifest
    source = open_source(path, layout, up_axis)
    category_ids = source.resolve(categories) if categories else source.present_categories()
    objs = sorted(select_models(source, category_ids, limit), key=lambda o: o.key)
    if not objs:
        names = dict(source.categories())
        wanted = ", ".join(f"{c} ({names.get(c, c)})" if names.get(c, c) != c else c for c in category_ids)
        raise CmaError(f"{source.root}: no objects (model folders) for the selected categories: {wanted}")
    spec = SplitSpec.bundled()
    jobs = [(o, split_of(o, spec)) for o in objs]
    workers = min(workers or min(os.cpu_count() or 1, 8), -(-len(jobs) // 8))  # no more than chunks of 8
    bar = dict(desc="scan", unit="object", total=len(jobs), enabled=show_progress)
    tally, kept = Tally(), []

    def counted(rows: Iterator[ManifestRow]) -> Iterator[ManifestRow]:
        for row in progress(rows, **bar):
            tally.add(row)
            if keep_rows:
                kept.append(row)
            yield row

    pool = None
    if workers <= 1 or len(jobs) < PARALLEL_MIN_MODELS:
        rows = (inspect_safely(j, source) for j in jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=(source,))
        rows = pool.map(inspect_safely, jobs, chunksize=16)
    try:
        if out is not None:
            manifest = write_manifest(counted(rows), ensure_parent(out), sort=False).resolve()
        else:
            manifest = None
            for _ in counted(rows):
                pass
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return ScanResult(source, category_ids, kept, tally, manifest, time.perf_counter() - start)


def summary_lines(result: ScanResult, max_problems: int = 20) -> list[str]:
    """The table of counts per category and the list of problems, as printed by the CLI."""
    source, t = result.source, result.tally
    names = dict(source.categories())
    lines = [source.summary_name(), ""]
    width = max([9] + [len(c) for c in result.category_ids if t.status.get(c)])
    header = f"{'category':<{width}} {'name':<14} {'objects':>7} {'ok':>5} {'warn':>5} {'error':>5}"
    header += "".join(f" {s:>6}" for s in SPLIT_NAMES)
    lines += [header, "-" * len(header)]

    def fmt(cid: str, name: str, c: Counter) -> str:
        n = c["ok"] + c["warn"] + c["error"]
        line = f"{cid:<{width}} {name[:14]:<14} {n:>7} {c['ok']:>5} {c['warn']:>5} {c['error']:>5}"
        return line + "".join(f" {c['split:' + s]:>6}" for s in SPLIT_NAMES)

    listed = result.category_ids
    for cid in listed[:200]:
        line = fmt(cid, names.get(cid, cid), t.status.get(cid, Counter()))
        absent = source.layout == "shapenet" and cid not in source.tree.synset_ids
        lines.append(line + ("   (no folder in this tree)" if absent else ""))
    if len(listed) > 200:
        lines.append(f"... {len(listed) - 200} more categories in the manifest")
    lines += ["-" * len(header), fmt("total", f"{len(t.status)} categories", sum(t.status.values(), Counter()))]

    lines.append("")
    if not t.errors and not t.warnings:
        lines.append("Problems: none")
    else:
        lines.append(f"Problems: {t.errors} object{'s' * (t.errors != 1)} with errors, {t.warnings} with warnings "
                     f"({', '.join(f'{c} x{n}' for c, n in t.codes.most_common())})")
        ordered = sorted(t.bad, key=lambda r: (r.status != "error", r.synset_id, r.model_id))
        for r in ordered[:max_problems]:
            lines.append(f"  {r.status:<5} {r.synset_id}/{r.model_id}  {' | '.join(r.problems)}")
        if t.errors + t.warnings > max_problems:
            lines.append(f"  ... {t.errors + t.warnings - max_problems} more in the manifest")
    if t.notes:
        lines.append(f"Notes (harmless quirks): {', '.join(f'{c} x{n}' for c, n in t.notes.most_common())}")
    lines.append("")
    where = f"Manifest: {result.manifest} ({t.total} rows)" if result.manifest else "Manifest: not written (no --out)"
    lines.append(f"{where}; scanned in {result.seconds:.1f} s")
    return lines
