"""``cma-build merge``: rebuild index.csv from what is on disk (the shards and the run logs), and
give shards written before zarr dimension names existed their names.

Nothing is written unless everything it is built from holds together: every shard whole (each
documented array, with its shape and dtype, safe ids; see :mod:`.integrity`), each shard's object
records naming the ids it stores at their rows, no run log or current index placing a finished
object in a shard that is gone, and every file it writes inside the dataset folder.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cma_builder.errors import CmaError
from cma_builder.format.reader import DatasetReader
from cma_builder.format.schema import ARRAYS
from cma_builder.format.writer import Dataset, add_dimension_names
from cma_builder.paths import check_inside
from cma_builder.render.scratch import remove_dead_runs
from cma_builder.render.settings import RenderSettings


@dataclass
class MergeResult:
    index: Path
    counts: Counter
    shards: int
    upgraded: int  # shards given dimension names


def merge(path: str | os.PathLike) -> MergeResult:
    reader = DatasetReader.open(path)
    remove_dead_runs()  # scratch of killed renders on this machine
    root, names = reader.root, reader.shard_names()
    for name in names:
        _check_records(root / "shards" / name, reader.stored_keys(name))
    _check_old_index(root, set(names))
    ds = Dataset(root, RenderSettings.from_dict(reader.attrs["settings"]))
    ds.state(strict=True)  # unsafe ids in a log, a finished object whose shard is gone: refused here
    check_inside(root, ["index.csv", ".lock-index", *(f"shards/{name}/{array}/zarr.json" for name in names
                                                      for array in [*ARRAYS, "."])])
    index = ds.write_index()
    upgraded = sum(add_dimension_names(root / "shards" / name) for name in names)
    counts = Counter(r["status"] for r in reader.index_rows())
    return MergeResult(index, counts, len(names), upgraded)


def _check_records(folder: Path, keys: list[str]) -> None:
    """The shard's own records (its zarr.json attributes, from which the index is rebuilt) name the
    objects it stores, one per row."""
    try:
        records = json.loads((folder / "zarr.json").read_text("utf-8")).get("attributes", {}).get("objects", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise CmaError(f"{folder}: unreadable zarr.json ({exc.__class__.__name__})") from None
    if not isinstance(records, list) or len(records) != len(keys):
        raise CmaError(f"{folder}: its attributes record {len(records) if isinstance(records, list) else 'no'} "
                       f"objects, but it stores {len(keys)}")
    for i, rec in enumerate(records):
        row = rec.get("row") if isinstance(rec, dict) else None
        key = f"{rec.get('synset_id')}/{rec.get('model_id')}" if isinstance(rec, dict) else repr(rec)
        if row != i or keys[i] != key:
            raise CmaError(f"{folder}: its attributes place {key} at row {row!r}, but the shard stores {keys[i]} at "
                           f"row {i}")


def _check_old_index(root: Path, present: set[str]) -> None:
    """A finished object of the current index.csv in a shard that is gone would silently drop out of
    the rebuilt one: refuse instead. Nothing else of the old index is used (it is being replaced)."""
    path = root / "index.csv"
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            if row.get("status") == "done" and row.get("shard") not in present:
                raise CmaError(f"{root / 'shards' / str(row.get('shard'))}: missing, but index.csv line "
                               f"{reader.line_num} places {row.get('synset_id')}/{row.get('model_id')} in it (copy "
                               "the shard back, or run cma-build render on this dataset again to render them "
                               "anew)")
