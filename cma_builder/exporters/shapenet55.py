"""ShapeNet-55 as the Point-BERT family reads it (Point-BERT, Point-MAE, ReCon, PointGPT, ACT).

Their ``datasets/ShapeNet55Dataset.py`` reads ``DATA_PATH/{subset}.txt`` (``DATA_PATH`` =
``data/ShapeNet55-34/ShapeNet-55``), takes each stripped line as a file name under ``PC_PATH``
(``data/ShapeNet55-34/shapenet_pc``), loads it with ``np.load``, indexes it with a permutation of
``np.arange(N_POINTS)`` (8192) and normalizes the sample itself (centroid, max radius). So every
file holds exactly ``--points`` rows, float32, and the export folder stands in for
``data/ShapeNet55-34``. The points are the first rows of ``fused_points``: a prefix of a
farthest-point ordering is itself an FPS sample. Coordinates stay in the OBJ frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cma_builder.atomic import atomic_write
from cma_builder.errors import CmaError
from cma_builder.format import ObjectRef
from cma_builder.exporters import Exporter, register

LIST_DIR = "ShapeNet-55"
PC_DIR = "shapenet_pc"


@register
class ShapeNet55(Exporter):
    name = "shapenet55"
    summary = "shapenet_pc/<synset>-<model>.npy float32 (8192, 3) + ShapeNet-55/{train,val,test}.txt"
    arrays = ("fused_points", "fused_point_count")

    def __init__(self, reader, options):
        points = options.get("points")
        super().__init__(reader, {"points": 8192 if points is None else int(points)})
        self.notes: list[str] = []
        self._distinct: list[int] = []  # distinct points of objects written now with fewer than --points

    def check(self) -> None:
        n, have = self.options["points"], self.reader.settings.fused_points
        if n < 1:
            raise CmaError(f"--points must be at least 1 (got {n})")
        if have < n:
            raise CmaError(f"the dataset's fused clouds have {have} points, fewer than --points {n} (ShapeNet-55 "
                           f"loaders index {n} rows); pass --points {have} and set the loader's N_POINTS to it, or "
                           f"render with --fused-points {n}")

    def file_name(self, obj: ObjectRef) -> str:
        return f"{obj.synset_id}-{obj.model_id}.npy"

    def target(self, obj: ObjectRef) -> str:
        return f"{PC_DIR}/{self.file_name(obj)}"

    def write(self, obj: ObjectRef, arrays: dict, path: Path) -> None:
        n = self.options["points"]
        if int(arrays["fused_point_count"]) < n:
            self._distinct.append(int(arrays["fused_point_count"]))
        with open(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arrays["fused_points"][:n], dtype=np.float32))

    def list_files(self) -> list[str]:
        return [f"{LIST_DIR}/{split}.txt" for split in ("train", "val", "test")]

    def finish(self, out: Path, exported: list[ObjectRef]) -> list[Path]:
        (out / LIST_DIR).mkdir(exist_ok=True)
        paths = []
        for split in ("train", "val", "test"):
            path = out / LIST_DIR / f"{split}.txt"
            with atomic_write(path) as fh:
                fh.writelines(self.file_name(o) + "\n" for o in exported if o.split == split)
            paths.append(path)
        if self._distinct:
            fewest = min(self._distinct)
            self.notes.append(f"note: {len(self._distinct)} of the objects written now have fewer than "
                              f"{self.options['points']} distinct points (as few as {fewest}; rows repeat cyclically, "
                              "so a loader's random sample holds duplicates); render with more views or pixels, or "
                              f"export with --points {fewest} and set the loader's N_POINTS to it")
        return paths
