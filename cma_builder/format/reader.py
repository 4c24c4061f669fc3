"""Read-only access to a rendered dataset (no lock taken; safe while a render is running).

Every reader of the format goes through this: ``validate``, ``preview``, ``stats``, the exporters
and the training data (``CmaDataset``)::

    ds = DatasetReader.open("shapenet-cma")
    for obj in ds.objects():                    # index rows with status done
        a = ds.load(obj, ["rgb", "fused_points"])
        rgb2 = ds.read(obj, "rgb", view=2)      # one chunk only

Arrays are read straight from the shard files (:class:`~cma_builder.format.shards.ShardArray`)
when a shard has the layout cma-build writes, and through zarr otherwise (strings, other
layouts). Opened arrays are cached per process (rebuilt after fork or unpickling), so a reader
is safe to hand to worker processes.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from cma_builder.errors import CmaError
from cma_builder.format.integrity import check_index_row, shard_problems
from cma_builder.format.schema import ARRAYS, FORMAT, read_attrs, shard_names
from cma_builder.format.shards import ShardArray
from cma_builder.render.settings import RenderSettings

MAX_OPEN_ARRAYS = 1024  # per-process LRU of opened (shard, array) readers


@dataclass(frozen=True)
class ObjectRef:
    """One object of the index: where its arrays are."""

    synset_id: str
    model_id: str
    category: str
    split: str
    shard: str
    row: int
    obj_path: str

    @property
    def key(self) -> str:
        return f"{self.synset_id}/{self.model_id}"


class ZarrArray:
    """The plain-zarr fallback, with :class:`ShardArray`'s reading methods."""

    def __init__(self, array: zarr.Array):
        self.array = array

    def read(self, row: int, view: int | None = None) -> np.ndarray:
        """``array[row]`` or ``array[row, view]``."""
        return self.array[row] if view is None else self.array[row, view]

    def read_all(self) -> np.ndarray:
        return self.array[:]


class DatasetReader:
    """A rendered dataset opened for reading: its index, its shards and their arrays."""

    def __init__(self, root: Path, attrs: dict):
        self.root = root
        self.attrs = attrs
        self.settings = RenderSettings.from_dict(attrs["settings"])
        self._cache: dict | None = None

    def __getstate__(self):
        return dict(self.__dict__, _cache=None)

    def _opened(self) -> dict:
        """This process's opened groups and arrays (a forked or unpickled copy starts empty)."""
        if self._cache is None or self._cache["pid"] != os.getpid():
            self._cache = {"pid": os.getpid(), "groups": {}, "arrays": OrderedDict(), "listed": {}, "checked": {}}
        return self._cache

    @classmethod
    def open(cls, path: str | os.PathLike) -> "DatasetReader":
        root = Path(path).expanduser()
        if not root.is_dir():
            raise CmaError(f"{root}: no such dataset folder (make one with cma-build render --out {root})")
        attrs = read_attrs(root)
        if attrs is None:
            raise CmaError(f"{root}: not a cma-build dataset (no zarr.json with the '{FORMAT}' attribute)")
        return cls(root.resolve(), attrs)

    # --- index --------------------------------------------------------------------------
    def index_rows(self) -> list[dict]:
        """index.csv as dicts (every status)."""
        path = self.root / "index.csv"
        if not path.is_file():
            raise CmaError(f"{path}: missing; run cma-build render on this dataset again to rebuild it")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"synset_id", "model_id", "status", "shard", "row"} - set(reader.fieldnames or [])
            if missing:
                raise CmaError(f"{path}: not a cma-build index (missing columns: {', '.join(sorted(missing))})")
            rows = []
            for row in reader:
                check_index_row(row, reader.line_num, path)  # ids become file names: refuse unsafe ones
                rows.append(row)
        return rows

    def objects(self, rows: list[dict] | None = None) -> list[ObjectRef]:
        """The done objects of the index, in index order."""
        rows = self.index_rows() if rows is None else rows
        return [ref(r) for r in rows if r["status"] == "done"]

    def shard_names(self) -> list[str]:
        return shard_names(self.root)

    def verify(self, objs: list[ObjectRef], shards: list[str] = ()) -> None:
        """Refuse (CmaError, one line naming the shard and what is wrong) to go on with ``objs`` and
        ``shards`` when a shard they need is missing, lacks an array the dataset documents, has one
        of another shape or dtype than its neighbours and the settings say, or stores other ids at
        an object's row than the index gives (see :mod:`~cma_builder.format.integrity`). Each shard
        is checked once per process."""
        present = set(self.shard_names())
        by_shard: dict[str, list[ObjectRef]] = {name: [] for name in shards}
        for obj in objs:
            by_shard.setdefault(obj.shard, []).append(obj)
        for name, members in by_shard.items():
            folder = self.root / "shards" / name
            if name not in present:
                first = members[0].key if members else ""
                more = f" and {len(members) - 1} more" if len(members) > 1 else ""
                raise CmaError(f"{folder}: missing, but index.csv places {first}{more} in it (copy the shard back, "
                               "or run cma-build render on this dataset again to render them anew)")
            keys = self.stored_keys(name)
            for obj in members:
                if obj.row >= len(keys):
                    raise CmaError(f"{folder}: index.csv places {obj.key} at row {obj.row}, but the shard holds "
                                   f"{len(keys)} objects")
                if keys[obj.row] != obj.key:
                    raise CmaError(f"{folder}: index.csv places {obj.key} at row {obj.row}, but the shard stores "
                                   f"{keys[obj.row]} there; the index does not belong to these shards (cma-build "
                                   "merge rebuilds it from them)")

    def stored_keys(self, shard: str) -> list[str]:
        """The key ("synset/model") stored at each row of ``shard``, after checking that the shard is
        whole (CmaError, one line, otherwise; checked once per process)."""
        checked = self._opened()["checked"]
        if shard not in checked:
            checked[shard] = shard_problems(self.root, shard, self.attrs["arrays"])
        keys, problems = checked[shard]
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise CmaError(f"{self.root / 'shards' / shard}: {problems[0]}{more}; the dataset is damaged "
                           "(cma-build validate lists every problem)")
        return keys

    # --- arrays -------------------------------------------------------------------------
    def shard(self, name: str) -> zarr.Group:
        """The shard as a zarr group (its arrays' metadata: shapes, dtypes)."""
        groups = self._opened()["groups"]
        if name not in groups:
            path = self.root / "shards" / name
            if not (path / "zarr.json").is_file():
                raise CmaError(f"{path}: shard missing")
            # the arrays' own zarr.json is the truth; consolidated metadata is a copy for xarray
            groups[name] = zarr.open_group(path, mode="r", use_consolidated=False)
        return groups[name]

    def has_array(self, shard: str, name: str) -> bool:
        return (self.root / "shards" / shard / name / "zarr.json").is_file()

    def array(self, shard: str, name: str) -> ShardArray | ZarrArray:
        """Array ``name`` of ``shard``: the fast :class:`ShardArray` for the layout cma-build writes,
        zarr for any other (cached per process, least recently used dropped past MAX_OPEN_ARRAYS)."""
        arrays = self._opened()["arrays"]
        key = (shard, name)
        if key in arrays:
            arrays.move_to_end(key)
            return arrays[key]
        folder = self.root / "shards" / shard / name
        arr = ShardArray.open(folder) or ZarrArray(zarr.open_array(folder, mode="r"))
        arrays[key] = arr
        if len(arrays) > MAX_OPEN_ARRAYS:
            arrays.popitem(last=False)
        return arr

    def read(self, obj: ObjectRef, name: str, view: int | None = None) -> np.ndarray:
        """The object's row of array ``name`` (leading axis dropped), or only one ``view`` of it."""
        try:
            return self.array(obj.shard, name).read(obj.row, view)
        except (ValueError, RuntimeError, IndexError, OSError) as exc:  # damaged bytes: one line, not a traceback
            raise CmaError(f"{self.root / 'shards' / obj.shard / name}: unreadable at row {obj.row} "
                           f"({exc.__class__.__name__}: {exc})") from None

    def read_shard(self, shard: str, name: str) -> np.ndarray:
        """Array ``name`` of every object of ``shard``."""
        try:
            return self.array(shard, name).read_all()
        except (ValueError, RuntimeError, IndexError, OSError) as exc:
            raise CmaError(f"{self.root / 'shards' / shard / name}: unreadable ({exc.__class__.__name__}: {exc})") \
                from None

    def load(self, obj: ObjectRef, arrays: list[str] | None = None) -> dict[str, np.ndarray]:
        """The object's arrays (all present ones when ``arrays`` is None), leading axis dropped."""
        present = self.shard_arrays(obj.shard)
        names = present if arrays is None else [name for name in arrays if name in present]
        return {name: self.read(obj, name) for name in names}

    def shard_arrays(self, shard: str) -> list[str]:
        """The arrays ``shard`` holds, in schema order (listed once per process: zarr's group listing
        costs ~6 ms, about 85% of loading a small object)."""
        listed = self._opened()["listed"]
        if shard not in listed:
            path = self.root / "shards" / shard
            if not (path / "zarr.json").is_file():
                raise CmaError(f"{path}: shard missing")
            names = [p.name for p in path.iterdir() if (p / "zarr.json").is_file()]
            listed[shard] = sorted(names, key=_schema_order)
        return listed[shard]

    def array_names(self) -> list[str]:
        return list(self.attrs["arrays"])


def _schema_order(name: str) -> tuple[int, str]:
    """Arrays in the order of ARRAYS (zarr lists a group's arrays in no fixed order), others last."""
    return (list(ARRAYS).index(name) if name in ARRAYS else len(ARRAYS), name)


def ref(row: dict) -> ObjectRef:
    return ObjectRef(row["synset_id"], row["model_id"], row.get("category", ""), row.get("split", ""),
                     row["shard"], int(row["row"]), row.get("obj_path", ""))


__all__ = ["DatasetReader", "ObjectRef", "ZarrArray", "ref"]
