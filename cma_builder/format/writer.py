"""Writing a rendered dataset: a zarr v3 store of shards, a run log, and an index (what each
array holds is :mod:`cma_builder.format.schema`).

Layout of ``DATASET/``::

    zarr.json            root group; attributes document every array and the render settings
    shards/<name>/       one group per shard (up to shard_size objects), committed atomically
    log/<run id>.jsonl   append-only records (done / failed / skipped) written by each run
    index.csv            one row per object, rebuilt from shards + logs after every shard
    .staging/            shards being written (never visible under shards/)

A shard is written completely under .staging/ and then renamed into shards/ (an atomic rename
on one filesystem), so a shard is complete or absent. Shards carry their objects' index records
in their attributes, so the index can always be rebuilt from what is on disk.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from cma_builder import faults
from cma_builder.atomic import atomic_write
from cma_builder.errors import CmaError
from cma_builder.paths import check_name
from cma_builder.format.schema import (ARRAYS, FORMAT, INDEX_COLUMNS, describe, dimension_names, read_attrs,
                                       shard_names)
from cma_builder.render.settings import RenderSettings

_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


def _key(rec: dict) -> tuple[str, str]:
    return (rec["synset_id"], rec["model_id"])


def _checked_key(rec: object, where: str) -> tuple[str, str]:
    """The record's (synset_id, model_id), refused unless both are safe names and its status known."""
    if not isinstance(rec, dict) or rec.get("status") not in ("done", "failed", "skipped"):
        raise CmaError(f"{where}: not a cma-build object record")
    for column in ("synset_id", "model_id"):
        check_name(rec.get(column), f"{where}: {column}")
    if rec["status"] == "done":
        check_name(rec.get("shard"), f"{where}: shard")
        if not isinstance(rec.get("row"), int) or rec["row"] < 0:
            raise CmaError(f"{where}: row {rec.get('row')!r} is not a row number")
    return _key(rec)


@dataclass
class State:
    records: dict[tuple[str, str], dict]  # latest record per object
    shards: list[str]

    def status(self, key) -> str | None:
        rec = self.records.get(key)
        return rec["status"] if rec else None


class Dataset:
    """A dataset opened for writing by one run. ``slice_`` (index, count) marks a run that renders
    one slice of the selection (batch-scheduler arrays): slices of one dataset run concurrently,
    each alone in its own slice; a whole-dataset run excludes all of them."""

    def __init__(self, root: Path, settings: RenderSettings, slice_: tuple[int, int] | None = None):
        self.root = root
        self.settings = settings
        self.settings_hash = settings.hash()
        self.slice_ = slice_
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._shard_seq = 0
        self._locks: list = []

    @property
    def staging(self) -> Path:
        """This run's staging folder: private to the slice (or the whole-dataset run)."""
        tag = "all" if self.slice_ is None else f"slice-{self.slice_[0]}-of-{self.slice_[1]}"
        return self.root / ".staging" / tag

    # --- creation and checks -------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, settings: RenderSettings, force: bool = False,
             slice_: tuple[int, int] | None = None, source: dict | None = None) -> "Dataset":
        """Open a dataset for writing with ``settings`` (creating it if absent) and hold its
        write lock (shared plus the slice's own when ``slice_`` is given). Refuses other settings
        unless ``force`` (which discards the existing shards, logs and index), and objects of
        another layout than ``source`` (render.driver.describe_source: layout and labels) says."""
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise CmaError(f"{root}: is a file; expected a dataset folder")
        foreign = f"{root}: folder is not empty and is not a cma-build dataset; refusing to write into it"
        if root.is_dir() and not (root / ".lock").exists() and read_attrs(root) is None and any(root.iterdir()):
            raise CmaError(foreign)  # before leaving lock files in someone else's folder
        if force and slice_ is not None:
            raise CmaError("--force discards the whole dataset; it cannot be combined with --num-shards/--shard-index "
                           "(run the --force once without slices, or choose another --out)")
        root.mkdir(parents=True, exist_ok=True)
        ds = cls(root.resolve(), settings, slice_)
        ds._lock()  # before looking at (or discarding) anything another run might be writing
        with _flock(ds.root / ".lock-create", fcntl.LOCK_EX):  # slices may start together
            existing = read_attrs(root)
            if existing is None and any(not p.name.startswith(".lock") for p in root.iterdir()):
                raise CmaError(foreign)
            if existing is not None and existing["settings_hash"] != settings.hash():
                if not force:
                    diff = "; ".join(settings.differences(existing["settings"])[:6])
                    raise CmaError(f"{root}: rendered with other settings ({diff}); pass --force to discard it "
                                   "and render again, or choose another --out")
                cls._discard(root)
                existing = None
            if existing is not None and source is not None:
                layout = existing.get("source", {}).get("layout", "shapenet")
                if layout != source["layout"]:
                    raise CmaError(f"{root}: holds objects of a {layout} collection, not {source['layout']}; render "
                                   "each layout into its own --out (their labels differ)")
            if existing is None:
                cls._create(root, settings, source)
            (ds.root / "log").mkdir(exist_ok=True)
        return ds

    def _lock(self) -> None:
        """flock(2) locks, released by the kernel when the process ends (even on SIGKILL):
        a whole-dataset run holds DATASET/.lock exclusively; a slice holds it shared and its
        own DATASET/.lock-slice-I-of-N exclusively."""
        if self.slice_ is None:
            self._take(self.root / ".lock", fcntl.LOCK_EX, "another cma-build render is writing to this dataset")
        else:
            i, n = self.slice_
            self._take(self.root / ".lock", fcntl.LOCK_SH,
                       "a cma-build render of the whole dataset (no --num-shards) is writing to it")
            self._take(self.root / f".lock-slice-{i}-of-{n}", fcntl.LOCK_EX,
                       f"another cma-build render is writing slice {i} of {n} of this dataset")

    def _take(self, path: Path, mode: int, busy: str) -> None:
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            raise CmaError(f"{self.root}: {busy}" + (f" ({holder})" if holder else "")) from None
        if mode == fcntl.LOCK_EX:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
            fh.flush()
        self._locks.append(fh)

    @staticmethod
    def _discard(root: Path) -> None:
        for name in ("shards", "log", ".staging", "index.csv", "zarr.json", "validation.json"):  # not .lock: held
            p = root / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    @staticmethod
    def _create(root: Path, settings: RenderSettings, source: dict | None = None) -> None:
        # mode "a", never "w": "w" empties the folder, lock files included, and a lock on a
        # deleted file excludes nobody. zarr.json is written once, with its attributes.
        group = zarr.open_group(root, mode="a", zarr_format=3, attributes={FORMAT: describe(settings, source)})
        group.create_group("shards")

    # --- state ----------------------------------------------------------------------------
    def state(self, strict: bool = False) -> State:
        """Latest record per object from the logs, reconciled with the shards on disk: a
        committed shard's objects are done even if the log lost them; a 'done' record whose
        shard is gone does not count (``strict``: is refused, as by ``merge``). A record whose
        ids are not safe names is refused (CmaError): they become index rows and file names."""
        records: dict[tuple[str, str], dict] = {}
        for log in sorted((self.root / "log").glob("*.jsonl")):
            for number, line in enumerate(log.read_text("utf-8", errors="replace").splitlines(), start=1):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                records[_checked_key(rec, f"{log} line {number}")] = rec
        shards = self.shard_names()
        present = set(shards)
        for key, rec in list(records.items()):
            if rec["status"] == "done" and rec.get("shard") not in present:
                if strict:
                    raise CmaError(f"{self.root / 'shards' / str(rec.get('shard'))}: missing, but the run log says "
                                   f"{key[0]}/{key[1]} was written to it (copy the shard back, or run cma-build render "
                                   "on this dataset again to render them anew)")
                del records[key]
        for name in shards:
            attrs = zarr.open_group(self.root / "shards" / name, mode="r", use_consolidated=False).attrs.asdict()
            for rec in attrs.get("objects", []):
                key = _checked_key(rec, f"{self.root / 'shards' / name}")
                old = records.get(key)
                if old is None or old["status"] != "done" or old.get("shard") not in present:
                    records[key] = rec
        return State(records, shards)

    def shard_names(self) -> list[str]:
        return shard_names(self.root)

    def label_names(self) -> list[str]:
        """The category ids the dataset's labels index (root attribute label_names)."""
        return list((read_attrs(self.root) or {}).get("label_names", []))

    # --- writing --------------------------------------------------------------------------
    def append_log(self, records: list[dict]) -> None:
        path = self.root / "log" / f"{self.run_id}.jsonl"
        with open(path, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_shard(self, results: list[dict]) -> tuple[str, list[dict]]:
        """Write rendered objects as one shard (atomically) and log them. Each result holds
        'record' (index fields) and 'arrays'. Returns (shard name, the logged records)."""
        start = time.perf_counter()
        self._shard_seq += 1
        name = f"{self.run_id}-{self._shard_seq:05d}"
        staging = self.staging / name
        staging.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(staging, mode="w", zarr_format=3)
        n = len(results)
        for array, (shape, dtype, per_view, _, _) in ARRAYS.items():
            if array == "normal" and not self.settings.normals:
                continue
            values = [r["arrays"][array] for r in results]
            data = np.stack([np.asarray(v, dtype=object if dtype == "string" else dtype) for v in values])
            chunks = (1, 1) + data.shape[2:] if per_view else (1,) + data.shape[1:]
            dims = dimension_names(array)
            kwargs = dict(shape=data.shape, chunks=chunks, shards=data.shape, compressors=[_COMPRESSOR],
                          dimension_names=dims)
            if dtype == "string":
                group.create_array(array, shape=data.shape, dtype=str, chunks=data.shape,
                                   dimension_names=dims)[:] = data.astype(str)
            else:
                group.create_array(array, dtype=dtype, **kwargs)[:] = data
            if array == "depth":
                faults.in_shard_write(self._shard_seq)  # test hook: die with the shard half-written
        seconds = time.perf_counter() - start
        records = []
        for row, r in enumerate(results):
            rec = dict(r["record"], shard=name, row=row, status="done", finished_at=timestamp())
            rec["seconds_write"] = round(seconds / n, 4)
            rec["seconds_total"] = round(rec.get("seconds_total", 0.0) + seconds / n, 4)
            records.append(rec)
        group.attrs["objects"] = records
        consolidate(staging)
        os.replace(staging, self.root / "shards" / name)  # the commit
        self.append_log(records)
        return name, records

    def cleanup_staging(self) -> None:
        """Remove shards left half-written by a crashed run of the same slice (never visible to
        readers). A whole-dataset run, which excludes every slice, clears all staging."""
        shutil.rmtree(self.root / ".staging" if self.slice_ is None else self.staging, ignore_errors=True)

    def write_index(self, state: State | None = None) -> Path:
        """Rewrite index.csv atomically from ``state`` (default: read fresh from disk, under the
        index lock, so that the last writer of concurrent slices leaves the complete index)."""
        if state is None:
            with _flock(self.root / ".lock-index", fcntl.LOCK_EX):
                return write_index(self.root, self.state())
        return write_index(self.root, state)


def consolidate(group: Path) -> None:
    """Copy the arrays' metadata into the group's zarr.json (zarr-python's consolidated metadata),
    so xarray.open_zarr opens a shard with one read and without its fallback warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(group))


def add_dimension_names(shard: Path) -> bool:
    """Give the arrays of a shard written before dimension names existed their names (metadata
    only, each zarr.json replaced atomically) and consolidate it. Returns whether it changed."""
    changed = False
    for meta_path in sorted(shard.glob("*/zarr.json")):
        name = meta_path.parent.name
        meta = json.loads(meta_path.read_text("utf-8"))
        if name not in ARRAYS or meta.get("node_type") != "array" or meta.get("dimension_names"):
            continue
        dims = dimension_names(name)
        if len(dims) != len(meta["shape"]):
            raise CmaError(f"{meta_path}: {len(meta['shape'])} axes, expected {len(dims)} ({', '.join(dims)})")
        meta["dimension_names"] = list(dims)
        with atomic_write(meta_path) as fh:
            json.dump(meta, fh, indent=2)
        changed = True
    if changed or "consolidated_metadata" not in json.loads((shard / "zarr.json").read_text("utf-8")):
        consolidate(shard)
        changed = True
    return changed


def write_index(root: Path, state: State) -> Path:
    """index.csv from the state (one row per object), replaced atomically."""
    path = root / "index.csv"
    with atomic_write(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for key in sorted(state.records):
            rec = dict(state.records[key])
            rec["warnings"] = ";".join(rec.get("warnings") or [])
            writer.writerow({c: "" if rec.get(c) is None else rec.get(c) for c in INDEX_COLUMNS})
    return path


@contextmanager
def _flock(path: Path, mode: int):
    """Hold flock(2) ``mode`` on ``path`` for the block (blocking)."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, mode)
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def timestamp() -> str:
    """Local time as ISO 8601 with the UTC offset (index.csv finished_at)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
