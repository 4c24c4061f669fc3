"""``cma-build render``: a collection (any layout of cma_builder.source) -> zarr dataset, resumable.

The driver selects objects, skips what the dataset already holds, inspects each object just
before sending it to a worker (files the scan finds unusable are recorded as ``skipped``),
collects results into shards of ``shard_size`` objects, and keeps index.csv current.

``render`` reads as the flow: ``_selection`` (the models of this run), ``Triage`` (what the
dataset already holds), then ``RenderRun.execute`` (the scheduling loop of schedule.py on a
local or Ray pool, each outcome recorded as it comes).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from cma_builder.errors import CmaError
from cma_builder.format.schema import SPLIT_CODES, read_attrs
from cma_builder.format.writer import Dataset, State, timestamp
from cma_builder.progress import progress
from cma_builder.render.messages import RenderRequest
from cma_builder.render.pool import WorkerPool
from cma_builder.render.schedule import Outcome, Task, Transport
from cma_builder.render.scratch import remove_dead_runs
from cma_builder.render.settings import RenderOptions, RenderSettings
from cma_builder.render.slices import slice_of
from cma_builder.source import open_source
from cma_builder.source.base import Source, SourceObject
from cma_builder.source.scan import inspect_safely, select_models, split_of
from cma_builder.source.splits import SPLIT_NAMES, SplitSpec

STAGES = ("setup", "render", "decode", "raycast", "backproject")  # the worker's timings, per object


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
    slice_: tuple[int, int] | None = None  # (slice index, slice count) of a sliced run
    plan: dict = field(default_factory=dict)  # category -> models to render


def select(source: Source, categories: list[str] | None, splits: list[str] | None,
           limit: int | None) -> list[SourceObject]:
    category_ids = source.resolve(categories) if categories else source.present_categories()
    if not splits:
        return select_models(source, category_ids, limit)
    bad = [s for s in splits if s not in SPLIT_NAMES]
    if bad:
        raise CmaError(f"unknown split '{bad[0]}': expected {', '.join(SPLIT_NAMES)}")
    spec = SplitSpec.bundled()
    return select_models(source, category_ids, limit, keep=lambda o: split_of(o, spec) in splits)


def render(path: str | os.PathLike, out: str | os.PathLike, settings: RenderSettings, options: RenderOptions,
           categories: list[str] | None = None, splits: list[str] | None = None, limit: int | None = None,
           retry_failed: bool = False, force: bool = False, dry_run: bool = False,
           show_progress: bool = True, slice_: tuple[int, int] | None = None, layout: str | None = None,
           up_axis: str | None = None) -> RenderSummary:
    """Render the selection of the collection at ``path`` (``layout`` detected when None), or slice
    ``slice_`` = (index, count) of it, into ``out``."""
    start = time.perf_counter()
    source, refs = _selection(path, categories, splits, limit, slice_, layout, up_axis)
    if dry_run:
        return _plan(source, refs, Path(out), settings, retry_failed, slice_)
    remove_dead_runs()  # scratch of killed runs on this machine, whether or not this run starts workers
    ray_pool = _connect_ray(settings, options)  # first: a bad --ray-address leaves the output untouched
    try:
        ds = Dataset.open(out, settings, force=force, slice_=slice_, source=describe_source(source))
    except BaseException:
        if ray_pool is not None:
            ray_pool.close()
        raise
    ds.cleanup_staging()
    state = ds.state()
    triage = Triage.of(refs, state, retry_failed)
    run = RenderRun(ds, source, triage.summary(ds.root, slice_), dict(state.records), options.shard_size)
    if triage.todo:
        run.execute(triage.todo, ray_pool or WorkerPool(settings, options), show_progress)
    else:
        run.write_final_index()
        if ray_pool is not None:
            ray_pool.close()
    run.summary.seconds = time.perf_counter() - start
    return run.summary


def _selection(path: str | os.PathLike, categories: list[str] | None, splits: list[str] | None,
               limit: int | None, slice_: tuple[int, int] | None, layout: str | None,
               up_axis: str | None) -> tuple[Source, list[SourceObject]]:
    """The collection and the objects this run is about (its slice of the selection)."""
    if limit is not None and limit < 1:
        raise CmaError(f"--limit must be at least 1, got {limit}")
    source = open_source(path, layout, up_axis)
    refs = select(source, categories, splits, limit)
    if not refs:
        raise CmaError(f"{source.root}: no objects match the selection")
    if slice_ is not None:
        refs = [r for r in refs if slice_of(r.object_id, slice_[1]) == slice_[0]]
    return source, refs


def describe_source(source: Source) -> dict:
    """The dataset's ``source`` attribute: the layout, its labels (category ids and names)."""
    cats = source.categories()
    return {"layout": source.layout, "label_names": [c for c, _ in cats],
            "label_categories": [n for _, n in cats]}


def _connect_ray(settings: RenderSettings, options: RenderOptions) -> Transport | None:
    if options.executor != "ray":
        return None
    from cma_builder.render.ray_pool import RayPool

    return RayPool(settings, options, options.ray_address)


@dataclass
class Triage:
    """The selection against what the dataset holds: what to render, what to leave alone."""

    todo: list[SourceObject]
    selected: int
    already_done: int = 0
    not_retried: int = 0  # failed or skipped earlier, left alone without --retry-failed

    @classmethod
    def of(cls, refs: list[SourceObject], state: State | None, retry_failed: bool) -> "Triage":
        triage = cls([], len(refs))
        for r in refs:
            status = state.status(r.key) if state is not None else None
            if status == "done":
                triage.already_done += 1
            elif status in ("failed", "skipped") and not retry_failed:
                triage.not_retried += 1
            else:
                triage.todo.append(r)
        return triage

    def summary(self, dataset: Path, slice_: tuple[int, int] | None, dry_run: bool = False) -> RenderSummary:
        return RenderSummary(dataset, self.selected, self.already_done, self.not_retried, len(self.todo),
                             dry_run=dry_run, slice_=slice_)


class RenderRun:
    """One run's state: the dataset's records, the results waiting to become a shard, the summary.

    ``execute`` feeds the models to the pool; each finished object is recorded as it comes
    (failures and skips in the run log at once, rendered objects in the next shard)."""

    def __init__(self, ds: Dataset, source: Source, summary: RenderSummary, records: dict, shard_size: int):
        self.ds = ds
        self.source = source
        self.summary = summary
        self.records = records
        self.shard_size = shard_size
        self.buffer: list[dict] = []  # rendered objects not yet in a shard
        self.spec = SplitSpec.bundled()
        self.labels = {cid: i for i, cid in enumerate(ds.label_names())}
        self.bar = None

    def execute(self, todo: list[SourceObject], pool: Transport, show_progress: bool) -> None:
        """Render ``todo`` on ``pool`` (closed at the end); an interrupt keeps what is finished."""
        self.bar = progress(desc="render", unit="obj", total=len(todo), enabled=show_progress)
        try:
            pool.run(self._tasks(todo), self._on_outcome)
            pool.close()
        except KeyboardInterrupt:
            self.summary.interrupted = True
            pool.close(kill=True)
        except BaseException:
            pool.close(kill=True)
            raise
        finally:
            t = time.perf_counter()
            self._flush()  # keep every object finished before an interrupt
            self.write_final_index()  # failures after the last shard too
            self.summary.timings["write"] += time.perf_counter() - t
            self.bar.close()
        self.summary.device = pool.device

    def write_final_index(self) -> None:
        # A slice's in-memory records miss what concurrent slices commit: it rebuilds the
        # index from disk (under the index lock), once at its end; a whole run keeps it current.
        self.ds.write_index(self._state() if self.summary.slice_ is None else None)

    def _update_index(self) -> None:
        if self.summary.slice_ is None:
            self.ds.write_index(self._state())

    def _state(self) -> State:
        return State(self.records, self.ds.shard_names())

    def _tasks(self, todo: list[SourceObject]) -> Iterator[Task]:
        """The render tasks of ``todo``, each object inspected when its turn comes: an unusable
        file is recorded as skipped instead."""
        for ref in todo:
            task = self._prepare(ref)
            if isinstance(task, Task):
                yield task
            else:
                self._log(task)

    def _prepare(self, obj: SourceObject) -> Task | dict:
        """The task of one object, or its ``skipped`` record when the scan finds its file unusable."""
        split = split_of(obj, self.spec)
        row = inspect_safely((obj, split), self.source)  # an unforeseen inspector error is this object's
        record = {"synset_id": obj.category_id, "model_id": obj.object_id, "category": obj.category,
                  "label": self.labels.get(obj.category_id, -1), "split": split, "obj_path": str(obj.path),
                  "format": obj.fmt, "up_axis": obj.up_axis,
                  "settings_hash": self.ds.settings_hash, "warnings": list(row.problems), "error": ""}
        if row.status == "error":
            return dict(record, status="skipped", error="scan: " + " | ".join(row.problems), finished_at=timestamp())
        return Task(RenderRequest(obj.object_id, str(obj.path), obj.fmt, obj.up_axis, obj.normalise), record)

    def _on_outcome(self, o: Outcome) -> None:
        for stage in STAGES:
            self.summary.timings[stage] += o.timings.get(stage, 0.0)
        record = _outcome_record(o)
        if o.status == "done":
            self._keep(record, o.arrays)
        else:
            rec = dict(record, status="failed", error=o.error, finished_at=timestamp())
            if o.traceback:
                rec["traceback"] = o.traceback  # in log/<run>.jsonl only; index.csv keeps its columns
            self._log(rec)

    def _keep(self, record: dict, arrays: dict) -> None:
        """A rendered object joins the next shard (written once ``shard_size`` are waiting)."""
        arrays = dict(arrays, model_id=np.array(record["model_id"]), synset_id=np.array(record["synset_id"]),
                      label=np.int16(record["label"]), split=np.uint8(SPLIT_CODES[record["split"]]))
        self.buffer.append({"record": record, "arrays": arrays})
        self._finish(dict(record, status="done"))
        if len(self.buffer) >= self.shard_size:
            t = time.perf_counter()
            self._flush()
            self.summary.timings["write"] += time.perf_counter() - t

    def _log(self, rec: dict) -> None:
        """A failed or skipped object: in the run log now."""
        self.ds.append_log([rec])
        self._finish(rec)

    def _finish(self, rec: dict) -> None:
        self.records[(rec["synset_id"], rec["model_id"])] = rec
        counts = self.summary.counts
        counts[rec["status"]] += 1
        if rec["status"] != "done":
            self.summary.failures.append((f"{rec['synset_id']}/{rec['model_id']}", rec["error"]))
        self.bar.set_postfix(done=counts["done"], failed=counts["failed"], skipped=counts["skipped"], refresh=False)
        self.bar.update(1)

    def _flush(self) -> None:
        if not self.buffer:
            return
        _, written = self.ds.write_shard(self.buffer)
        for rec in written:
            self.records[(rec["synset_id"], rec["model_id"])] = rec
        self.buffer.clear()
        self._update_index()


def _outcome_record(o: Outcome) -> dict:
    """The task's record completed with what the worker reports (status and error come later)."""
    record = dict(o.task.record)
    record["warnings"] = record["warnings"] + o.warnings
    for stage in STAGES:
        record[f"seconds_{stage}"] = round(o.timings.get(stage, 0.0), 4)
    record["seconds_total"] = round(sum(o.timings.values()), 4)
    record["worker"] = o.worker
    record["worker_rss_mb"] = round(o.rss_mb, 1) if o.rss_mb else ""
    return record


def _plan(source: Source, refs: list[SourceObject], out: Path, settings: RenderSettings,
          retry_failed: bool, slice_: tuple[int, int] | None = None) -> RenderSummary:
    """What a run would do, without creating or changing anything."""
    attrs = read_attrs(out) if out.is_dir() else None
    if attrs is not None and attrs["settings_hash"] != settings.hash():
        raise CmaError(f"{out}: rendered with other settings ({'; '.join(settings.differences(attrs['settings'])[:6])}); "
                       "a real run would need --force")
    state = Dataset(out.resolve(), settings).state() if attrs is not None else None
    triage = Triage.of(refs, state, retry_failed)
    summary = triage.summary(out.resolve(), slice_, dry_run=True)
    summary.plan = Counter(r.category for r in triage.todo)
    return summary


def summary_lines(s: RenderSummary) -> list[str]:
    where = f" (slice {s.slice_[0]} of {s.slice_[1]})" if s.slice_ else ""
    if s.dry_run:
        lines = [f"Dry run: {s.selected} models selected{where}; {s.already_done} already done, "
                 f"{s.not_retried} failed earlier (not retried), {s.to_render} to render into {s.dataset}"]
        lines += [f"  {name:<14} {n}" for name, n in sorted(s.plan.items())]
        return lines
    c = s.counts
    rate = c["done"] / s.seconds * 60 if s.seconds > 0 else 0.0
    lines = [("Interrupted" if s.interrupted else "Finished") + f"{where}: "
             + f"{c['done']} rendered, {c['failed']} failed, {c['skipped']} skipped (unusable file), "
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
