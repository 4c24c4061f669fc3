"""``cma-build render``: ShapeNetCore.v2 tree -> zarr dataset, resumable.

The driver selects models, skips what the dataset already holds, inspects each model just
before sending it to a worker (scan-unusable OBJs are recorded as ``skipped``), collects
results into shards of ``shard_size`` objects, and keeps index.csv current.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from cma_builder.format.writer import SPLIT_CODES, Dataset, State, label_names
from cma_builder.errors import CmaError
from cma_builder.render.slices import part_of
from cma_builder.progress import progress
from cma_builder.source.scan import select_models
from cma_builder.render.settings import RenderOptions, RenderSettings
from cma_builder.source.shapenet import ModelRef, ShapeNetTree, inspect_model
from cma_builder.source.splits import SPLIT_NAMES, SplitSpec
from cma_builder.render.pool import Outcome, WorkerPool


@dataclass
class RenderSummary:
    dataset: Path
    selected: int
    already_done: int = 0
    not_retried: int = 0  # failed/skipped earlier, left alone without --retry-failed
    to_render: int = 0
    counts: Counter = field(default_factory=Counter)  # this run: done / failed / skipped
    failures: list[tuple[str, str]] = field(default_factory=list)  # (synset/model, reason)
    seconds: float = 0.0
    timings: Counter = field(default_factory=Counter)  # summed seconds per stage
    device: str = ""
    interrupted: bool = False
    dry_run: bool = False
    part: tuple[int, int] | None = None  # (slice index, slice count) of a sliced run
    plan: dict = field(default_factory=dict)  # category -> models to render


def select(tree: ShapeNetTree, categories: list[str] | None, splits: list[str] | None,
           limit: int | None) -> list[ModelRef]:
    synsets = tree.taxonomy.resolve(categories, tree.synset_ids) if categories else tree.synset_ids
    if not splits:
        return select_models(tree, synsets, limit)
    bad = [s for s in splits if s not in SPLIT_NAMES]
    if bad:
        raise CmaError(f"unknown split '{bad[0]}': expected {', '.join(SPLIT_NAMES)}")
    spec = SplitSpec.bundled()
    return select_models(tree, synsets, limit, keep=lambda r: spec.assign(r.model_id) in splits)


def render(shapenet: str | os.PathLike, out: str | os.PathLike, settings: RenderSettings, options: RenderOptions,
           categories: list[str] | None = None, splits: list[str] | None = None, limit: int | None = None,
           retry_failed: bool = False, force: bool = False, dry_run: bool = False,
           show_progress: bool = True, part: tuple[int, int] | None = None) -> RenderSummary:
    """Render the selection (or slice ``part`` = (index, count) of it) into ``out``."""
    start = time.perf_counter()
    if limit is not None and limit < 1:
        raise CmaError(f"--limit must be at least 1, got {limit}")
    tree = ShapeNetTree.open(shapenet)
    refs = select(tree, categories, splits, limit)
    if not refs:
        raise CmaError(f"{tree.root}: no models match the selection")
    if part is not None:
        refs = [r for r in refs if part_of(r.model_id, part[1]) == part[0]]
    if dry_run:
        return _plan(tree, refs, Path(out), settings, retry_failed, part)
    ray_pool = None
    if options.executor == "ray":  # connect first: a bad --ray-address leaves the output untouched
        from cma_builder.render.ray_pool import RayPool

        ray_pool = RayPool(settings, options, options.ray_address)
    try:
        ds = Dataset.open(out, settings, force=force, part=part)
    except BaseException:
        if ray_pool is not None:
            ray_pool.close()
        raise
    ds.cleanup_staging()
    state = ds.state()
    summary = RenderSummary(ds.root, len(refs), part=part)
    todo = _todo(refs, state, retry_failed, summary)
    summary.to_render = len(todo)
    records = dict(state.records)

    def write_index() -> None:
        # A slice's in-memory records miss what concurrent slices commit: it rebuilds the
        # index from disk (under the index lock), once at its end; a whole run keeps it current.
        if part is None:
            ds.write_index(State(records, ds.shard_names()))

    if not todo:
        ds.write_index(State(records, ds.shard_names()) if part is None else None)
        if ray_pool is not None:
            ray_pool.close()
        summary.seconds = time.perf_counter() - start
        return summary

    spec = SplitSpec.bundled()
    labels = {sid: i for i, sid in enumerate(label_names())}
    buffer: list[dict] = []
    bar = progress(desc="render", unit="obj", total=len(todo), enabled=show_progress)

    def finish(rec: dict) -> None:
        records[(rec["synset_id"], rec["model_id"])] = rec
        summary.counts[rec["status"]] += 1
        if rec["status"] != "done":
            summary.failures.append((f"{rec['synset_id']}/{rec['model_id']}", rec["error"]))
        bar.set_postfix(done=summary.counts["done"], failed=summary.counts["failed"],
                        skipped=summary.counts["skipped"], refresh=False)
        bar.update(1)

    def flush() -> None:
        if not buffer:
            return
        name, written = ds.write_shard(buffer)
        for rec in written:
            records[(rec["synset_id"], rec["model_id"])] = rec
        buffer.clear()
        write_index()

    def tasks():
        for ref in todo:
            category = tree.taxonomy.category_name(ref.synset_id)
            split = spec.assign(ref.model_id)
            row = inspect_model(ref, category, split)
            record = {"synset_id": ref.synset_id, "model_id": ref.model_id, "category": category,
                      "label": labels.get(ref.synset_id, -1), "split": split, "obj_path": str(ref.obj_path),
                      "settings_hash": ds.settings_hash, "warnings": list(row.problems), "error": ""}
            if row.status == "error":
                rec = dict(record, status="skipped", error="scan: " + " | ".join(row.problems), finished_at=_now())
                ds.append_log([rec])
                finish(rec)
                continue
            yield {"model_id": ref.model_id, "obj_path": str(ref.obj_path), "record": record}

    def on_outcome(o: Outcome) -> None:
        record = dict(o.task["record"])
        record["warnings"] = record["warnings"] + o.warnings
        for stage in ("setup", "render", "decode", "raycast", "backproject"):
            record[f"seconds_{stage}"] = round(o.timings.get(stage, 0.0), 4)
            summary.timings[stage] += o.timings.get(stage, 0.0)
        record["seconds_total"] = round(sum(o.timings.values()), 4)
        record["worker"] = o.worker
        record["worker_rss_mb"] = round(o.rss_mb, 1) if o.rss_mb else ""
        if o.status == "done":
            arrays = dict(o.arrays, model_id=np.array(record["model_id"]), synset_id=np.array(record["synset_id"]),
                          label=np.int16(record["label"]), split=np.uint8(SPLIT_CODES[record["split"]]))
            buffer.append({"record": record, "arrays": arrays})
            finish(dict(record, status="done"))
            if len(buffer) >= options.shard_size:
                t = time.perf_counter()
                flush()
                summary.timings["write"] += time.perf_counter() - t
        else:
            rec = dict(record, status="failed", error=o.error, finished_at=_now())
            if o.traceback:
                rec["traceback"] = o.traceback  # in log/<run>.jsonl only; index.csv keeps its columns
            ds.append_log([rec])
            finish(rec)

    pool = ray_pool or WorkerPool(settings, options)
    try:
        pool.run(tasks(), on_outcome)
        pool.close()
    except KeyboardInterrupt:
        summary.interrupted = True
        pool.close(kill=True)
    except BaseException:
        pool.close(kill=True)
        raise
    finally:
        t = time.perf_counter()
        flush()  # keep every object finished before an interrupt
        ds.write_index(State(records, ds.shard_names()) if part is None else None)  # failures after the last shard too
        summary.timings["write"] += time.perf_counter() - t
        bar.close()
    summary.device = pool.device
    summary.seconds = time.perf_counter() - start
    return summary


def _todo(refs: list[ModelRef], state: State, retry_failed: bool, summary: RenderSummary) -> list[ModelRef]:
    todo = []
    for r in refs:
        status = state.status((r.synset_id, r.model_id))
        if status == "done":
            summary.already_done += 1
        elif status in ("failed", "skipped") and not retry_failed:
            summary.not_retried += 1
        else:
            todo.append(r)
    return todo


def _plan(tree: ShapeNetTree, refs: list[ModelRef], out: Path, settings: RenderSettings,
          retry_failed: bool, part: tuple[int, int] | None = None) -> RenderSummary:
    """What a run would do, without creating or changing anything."""
    summary = RenderSummary(out.resolve(), len(refs), dry_run=True, part=part)
    attrs = Dataset.read_attrs(out) if out.is_dir() else None
    if attrs is not None and attrs["settings_hash"] != settings.hash():
        raise CmaError(f"{out}: rendered with other settings ({'; '.join(settings.differences(attrs['settings'])[:6])}); "
                       "a real run would need --force")
    todo = refs
    if attrs is not None:
        todo = _todo(refs, Dataset(out.resolve(), settings).state(), retry_failed, summary)
    summary.to_render = len(todo)
    summary.plan = Counter(tree.taxonomy.category_name(r.synset_id) for r in todo)
    return summary


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def summary_lines(s: RenderSummary) -> list[str]:
    where = f" (slice {s.part[0]} of {s.part[1]})" if s.part else ""
    if s.dry_run:
        lines = [f"Dry run: {s.selected} models selected{where}; {s.already_done} already done, "
                 f"{s.not_retried} failed earlier (not retried), {s.to_render} to render into {s.dataset}"]
        lines += [f"  {name:<14} {n}" for name, n in sorted(s.plan.items())]
        return lines
    c = s.counts
    rate = c["done"] / s.seconds * 60 if s.seconds > 0 else 0.0
    lines = [("Interrupted" if s.interrupted else "Finished") + f"{where}: "
             + f"{c['done']} rendered, {c['failed']} failed, {c['skipped']} skipped (unusable OBJ), "
             f"{s.already_done} already done, {s.not_retried} earlier failures not retried"
             + (" (--retry-failed retries them)" if s.not_retried else "")]
    if c["done"] or c["failed"]:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in s.timings.items() if v)
        lines.append(f"Wall time {s.seconds:.1f} s, {rate:.1f} objects/min" + (f"; worker time: {stages}" if stages else "")
                     + (f"; device {s.device}" if s.device else ""))
    for key, reason in s.failures[:10]:
        lines.append(f"  {key}: {reason}")
    if len(s.failures) > 10:
        lines.append(f"  ... {len(s.failures) - 10} more in the index")
    lines.append(f"Dataset: {s.dataset}  (index: {s.dataset / 'index.csv'})")
    if s.interrupted:
        lines.append("Run the same command again to resume.")
    return lines
