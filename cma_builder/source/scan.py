"""``cma-build scan``: inspect every model of a ShapeNetCore.v2 tree and write the manifest."""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cma_builder.atomic import check_output_file, ensure_parent
from cma_builder.errors import CmaError
from cma_builder.source.manifest import ManifestRow, check_target, write_manifest
from cma_builder.progress import progress
from cma_builder.source.shapenet import ModelRef, ShapeNetTree, inspect_model
from cma_builder.source.splits import SPLIT_NAMES, SplitSpec

PARALLEL_MIN_MODELS = 64  # below this, worker start-up costs more than it saves


@dataclass
class ScanResult:
    tree: ShapeNetTree
    synset_ids: list[str]  # the selected categories (in order)
    rows: list[ManifestRow]
    manifest: Path | None
    seconds: float


def select_models(tree: ShapeNetTree, synset_ids: list[str], limit: int | None,
                  keep: Callable[[ModelRef], bool] | None = None) -> list[ModelRef]:
    """Models of the given synsets (those ``keep`` accepts); ``limit`` takes them round-robin
    across categories (sorted by model id within each), so a small limit still covers every category."""
    per = [[r for r in tree.models([sid]) if keep is None or keep(r)] for sid in synset_ids]
    if limit is None:
        return [r for refs in per for r in refs]
    out: list[ModelRef] = []
    depth = 0
    while len(out) < limit and any(depth < len(refs) for refs in per):
        for refs in per:
            if depth < len(refs) and len(out) < limit:
                out.append(refs[depth])
        depth += 1
    return out


def _inspect_safely(job: tuple[ModelRef, str, str]) -> ManifestRow:
    ref, category, split = job
    try:
        return inspect_model(ref, category, split)
    except Exception as exc:  # a defect we did not foresee must not stop a 52k-model scan
        return ManifestRow(model_id=ref.model_id, synset_id=ref.synset_id, category=category, split=split,
                           status="error", obj_path=str(ref.obj_path),
                           problems=[f"inspect_failed: {exc.__class__.__name__}: {exc}"])


def scan(shapenet: str | os.PathLike, out: str | os.PathLike | None = None, categories: list[str] | None = None,
         limit: int | None = None, workers: int | None = None, show_progress: bool = True) -> ScanResult:
    """Scan a tree; with ``out``, write the manifest there (atomically)."""
    start = time.perf_counter()
    if limit is not None and limit < 1:
        raise CmaError(f"--limit must be at least 1, got {limit}")
    if workers is not None and workers < 1:
        raise CmaError(f"--workers must be at least 1, got {workers}")
    if out is not None:
        check_output_file(out, "--out", "manifest.csv")  # its folder may be created (after the scan)
        if Path(out).parent.is_dir():
            check_target(Path(out))  # never clobber a file that is not an earlier manifest
    tree = ShapeNetTree.open(shapenet)
    synset_ids = tree.synset_ids if not categories else tree.taxonomy.resolve(categories, tree.synset_ids)
    refs = select_models(tree, synset_ids, limit)
    if not refs:
        wanted = ", ".join(f"{s} ({tree.taxonomy.category_name(s)})" for s in synset_ids)
        raise CmaError(f"{tree.root}: no model folders for the selected categories: {wanted}")
    spec = SplitSpec.bundled()
    jobs = [(r, tree.taxonomy.category_name(r.synset_id), spec.assign(r.model_id)) for r in refs]
    workers = min(workers or min(os.cpu_count() or 1, 8), -(-len(jobs) // 8))  # no more than chunks of 8
    bar = dict(desc="scan", unit="model", total=len(jobs), enabled=show_progress)
    if workers <= 1 or len(jobs) < PARALLEL_MIN_MODELS:
        rows = [_inspect_safely(j) for j in progress(jobs, **bar)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(progress(pool.map(_inspect_safely, jobs, chunksize=8), **bar))
    manifest = write_manifest(rows, ensure_parent(out)).resolve() if out is not None else None
    return ScanResult(tree, synset_ids, rows, manifest, time.perf_counter() - start)


def summary_lines(result: ScanResult, max_problems: int = 20) -> list[str]:
    """The table of counts per category and the list of problems, as printed by the CLI."""
    tree, rows = result.tree, result.rows
    lines = [f"ShapeNet root: {tree.root}  (taxonomy: {tree.taxonomy.source})", ""]
    header = f"{'synset':<9} {'category':<14} {'models':>6} {'ok':>5} {'warn':>5} {'error':>5}"
    header += "".join(f" {s:>6}" for s in SPLIT_NAMES)
    lines += [header, "-" * len(header)]
    by_synset: dict[str, list[ManifestRow]] = {}
    for r in rows:
        by_synset.setdefault(r.synset_id, []).append(r)

    def fmt(sid: str, name: str, group: list[ManifestRow]) -> str:
        status = Counter(r.status for r in group)
        split = Counter(r.split for r in group)
        line = f"{sid:<9} {name[:14]:<14} {len(group):>6} {status['ok']:>5} {status['warn']:>5} {status['error']:>5}"
        return line + "".join(f" {split[s]:>6}" for s in SPLIT_NAMES)

    for sid in result.synset_ids:
        group = by_synset.get(sid, [])
        line = fmt(sid, tree.taxonomy.category_name(sid), group)
        lines.append(line + ("   (no folder in this tree)" if sid not in tree.synset_ids else ""))
    lines += ["-" * len(header), fmt("total", f"{len(by_synset)} categories", rows)]

    bad = [r for r in rows if r.status != "ok"]
    notes = Counter(n.split(":")[0] for r in rows for n in r.notes)
    lines.append("")
    if not bad:
        lines.append("Problems: none")
    else:
        codes = Counter(p.split(":")[0] for r in bad for p in r.problems)
        lines.append(f"Problems: {sum(r.status == 'error' for r in bad)} models with errors, "
                     f"{sum(r.status == 'warn' for r in bad)} with warnings "
                     f"({', '.join(f'{c} x{n}' for c, n in codes.most_common())})")
        ordered = sorted(bad, key=lambda r: (r.status != "error", r.synset_id, r.model_id))
        for r in ordered[:max_problems]:
            lines.append(f"  {r.status:<5} {r.synset_id}/{r.model_id}  {' | '.join(r.problems)}")
        if len(bad) > max_problems:
            lines.append(f"  ... {len(bad) - max_problems} more in the manifest")
    if notes:
        lines.append(f"Notes (harmless quirks): {', '.join(f'{c} x{n}' for c, n in notes.most_common())}")
    lines.append("")
    where = f"Manifest: {result.manifest} ({len(rows)} rows)" if result.manifest else "Manifest: not written (no --out)"
    lines.append(f"{where}; scanned in {result.seconds:.1f} s")
    return lines
