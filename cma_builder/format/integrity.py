"""What a reader checks before trusting a dataset someone else made (datasets travel).

* Every index.csv row names its object with safe ids (one plain path component each: exporters
  and ``preview`` make file names of them), and a done row gives an integer place (shard, row)
  with a safe shard name.
* Every shard a command reads holds each array the root attributes document, with the documented
  per-object shape and dtype and the same number of objects as its neighbours, and stores at each
  row the ids the index gives for it.

:meth:`DatasetReader.verify <cma_builder.format.reader.DatasetReader.verify>` raises the first
problem as one line (CmaError) before a command writes anything; ``validate`` reports the same
findings per object (:func:`shard_problems`). Metadata and the two id arrays only: about 5 ms a
shard.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import zarr

from cma_builder.errors import CmaError
from cma_builder.paths import name_problem

ID_COLUMNS = ("synset_id", "model_id")


def check_index_row(row: dict, line: int, path: Path) -> None:
    """Refuse an index row whose ids are not safe names or whose done place is not (safe shard
    name, integer row >= 0); ``line`` is its line in ``path`` (the header is line 1)."""
    where = f"{path} line {line}"
    for column in ID_COLUMNS:
        problem = name_problem(row.get(column))
        if problem:
            raise CmaError(f"{where}: {column} {_short(row.get(column))} is not a safe name ({problem}); ids "
                           "become file names, and cma-build writes only safe ones")
    category = row.get("category") or ""
    if category and name_problem(category):
        raise CmaError(f"{where}: category {_short(category)} is not a safe name ({name_problem(category)})")
    if row.get("status") == "done":
        problem = name_problem(row.get("shard"))
        if problem:
            raise CmaError(f"{where}: shard {_short(row.get('shard'))} is not a safe name ({problem})")
        value = row.get("row") or ""
        if not (value.isascii() and value.isdigit()):
            raise CmaError(f"{where}: row {_short(value)} is not a row number")


def shard_problems(root: Path, name: str, spec: dict) -> tuple[list[str] | None, list[str]]:
    """("synset/model" stored at each row, or None if unreadable; what is wrong) of shard ``name``
    of the dataset at ``root``, against ``spec`` (the root attributes' ``arrays``)."""
    folder = root / "shards" / name
    problems: list[str] = []
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    for array in spec:
        meta_path = folder / array / "zarr.json"
        if not meta_path.is_file():
            problems.append(f"array {array} is missing")
            continue
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            shapes[array] = (tuple(int(s) for s in meta["shape"]), str(meta["data_type"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"array {array} has unreadable metadata ({exc.__class__.__name__})")
    keys = _stored_keys(folder, problems) if {"synset_id", "model_id"} <= set(shapes) else None
    if keys is not None:
        objects = len(keys)
    elif shapes:
        objects = Counter(shape[0] if shape else 0 for shape, _ in shapes.values()).most_common(1)[0][0]
    else:
        objects = 0
    for array, (shape, dtype) in shapes.items():
        want = (objects,) + tuple(spec[array].get("example_shape", [None])[1:])
        if shape != want:
            problems.append(f"array {array} has shape {shape}, expected {want} ({objects} objects in this shard)")
        elif dtype != spec[array].get("dtype", dtype):
            problems.append(f"array {array} has dtype {dtype}, expected {spec[array]['dtype']}")
    return keys, problems


def _stored_keys(folder: Path, problems: list[str]) -> list[str] | None:
    try:
        ids = [zarr.open_array(folder / column, mode="r")[:].tolist() for column in ID_COLUMNS]
    except Exception as exc:  # a damaged shard is a finding, not a crash
        problems.append(f"its ids are unreadable ({exc.__class__.__name__}: {exc})")
        return None
    if len(ids[0]) != len(ids[1]):
        problems.append(f"it stores {len(ids[0])} synset ids but {len(ids[1])} model ids")
        return None
    for column, values in zip(ID_COLUMNS, ids):
        for row, value in enumerate(values):
            problem = name_problem(value)
            if problem:
                problems.append(f"it stores {column} {_short(value)} at row {row}, not a safe name ({problem})")
                return None
    return [f"{s}/{m}" for s, m in zip(*ids)]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
