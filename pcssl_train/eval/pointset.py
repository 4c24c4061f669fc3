"""``PointSet``: the in-memory form every evaluation protocol consumes (what the readers return)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class PointSet:
    """``points`` (N, P, 3) float32; ``labels`` (N,) int64 class index into ``class_names``.

    Part segmentation sets (ShapeNetPart) also carry ``seg`` (N, P) int64 global part ids and
    ``parts_of_class[c]``: the part ids that class c can have. ``ids`` name the samples (file or
    model ids) so results can be traced back; ``origin`` says which files and sampling made the clouds."""

    points: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    seg: np.ndarray | None = None
    parts_of_class: list[list[int]] | None = None
    ids: list[str] = field(default_factory=list)
    name: str = ""
    origin: str = ""        # which files and which sampling the clouds come from (said in results)

    def __post_init__(self):
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.points.ndim != 3 or self.points.shape[-1] != 3:
            raise ValueError(f"points must be (N, P, 3), got {self.points.shape}")
        if len(self.labels) != len(self.points):
            raise ValueError(f"{len(self.points)} clouds but {len(self.labels)} labels")
        if self.seg is not None:
            self.seg = np.asarray(self.seg, dtype=np.int64)
            if self.seg.shape != self.points.shape[:2]:
                raise ValueError(f"seg must be (N, P) = {self.points.shape[:2]}, got {self.seg.shape}")

    def __len__(self) -> int:
        return len(self.points)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_parts(self) -> int:
        return 0 if self.parts_of_class is None else 1 + max(p for parts in self.parts_of_class for p in parts)

    def subset(self, index) -> "PointSet":
        index = np.asarray(index)
        return replace(self, points=self.points[index], labels=self.labels[index],
                       seg=None if self.seg is None else self.seg[index],
                       ids=[self.ids[i] for i in np.arange(len(self))[index]] if self.ids else [])
