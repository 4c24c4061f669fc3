"""Read-only access to a rendered dataset (no lock taken; safe while a render is running).

``validate``, ``preview`` and ``stats`` read through this; training code can too::

    ds = DatasetReader.open("shapenet-cma")
    for obj in ds.objects():                    # index rows with status done
        a = ds.load(obj, ["rgb", "fused_points"])
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from cma_builder.format.writer import FORMAT, INDEX_COLUMNS, Dataset, shard_names
from cma_builder.errors import CmaError
from cma_builder.render.settings import RenderSettings


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


class DatasetReader:
    def __init__(self, root: Path, attrs: dict):
        self.root = root
        self.attrs = attrs
        self.settings = RenderSettings.from_dict(attrs["settings"])
        self._groups: dict[str, zarr.Group] = {}

    @classmethod
    def open(cls, path: str | os.PathLike) -> "DatasetReader":
        root = Path(path).expanduser()
        if not root.is_dir():
            raise CmaError(f"{root}: no such dataset folder (make one with cma-build render --out {root})")
        attrs = Dataset.read_attrs(root)
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
            return list(reader)

    def objects(self, rows: list[dict] | None = None) -> list[ObjectRef]:
        """The done objects of the index, in index order."""
        rows = self.index_rows() if rows is None else rows
        return [ref(r) for r in rows if r["status"] == "done"]

    def shard_names(self) -> list[str]:
        return shard_names(self.root)

    # --- arrays -------------------------------------------------------------------------
    def shard(self, name: str) -> zarr.Group:
        if name not in self._groups:
            path = self.root / "shards" / name
            if not (path / "zarr.json").is_file():
                raise CmaError(f"{path}: shard missing")
            # the arrays' own zarr.json is the truth; consolidated metadata is a copy for xarray
            self._groups[name] = zarr.open_group(path, mode="r", use_consolidated=False)
        return self._groups[name]

    def load(self, obj: ObjectRef, arrays: list[str] | None = None) -> dict[str, np.ndarray]:
        """The object's arrays (all present ones when ``arrays`` is None), leading axis dropped."""
        group = self.shard(obj.shard)
        names = list(group.array_keys()) if arrays is None else arrays
        return {name: group[name][obj.row] for name in names if name in group}

    def array_names(self) -> list[str]:
        return list(self.attrs["arrays"])


def ref(row: dict) -> ObjectRef:
    return ObjectRef(row["synset_id"], row["model_id"], row.get("category", ""), row.get("split", ""),
                     row["shard"], int(row["row"]), row.get("obj_path", ""))


__all__ = ["DatasetReader", "ObjectRef", "INDEX_COLUMNS"]
