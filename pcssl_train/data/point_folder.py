"""Pretraining data that is points only, in the layouts the official point methods train on.

* ``shapenet55``: the Point-BERT family's ShapeNet-55 (``ShapeNet55-34/``: ``shapenet_pc/<synset>-<model>.npy``
  float32 (8192, 3), ``ShapeNet-55/{train,test}.txt`` listing those file names): the official Point-MAE
  pretraining data, and what ``cma-build export --format shapenet55`` writes. ``-d`` may name the
  ``ShapeNet55-34`` folder or its ``ShapeNet-55`` list folder. Official sampling
  (``datasets/ShapeNet55Dataset.py``): a random permutation of the 8192 rows, its first N; then
  ``pc_norm`` (centroid, max radius 1).
* ``modelnet40`` / ``modelnet10`` (in-domain self-supervision on a benchmark's train split): a
  ``modelnet40_normal_resampled`` folder (text files or the official ``.dat`` cache) or a
  ``modelnet40_ply_hdf5_2048`` folder. Official sampling (Point-MAE ``tools/runner_pretrain.py`` for
  ModelNet: ``misc.fps(points, npoints)`` on the train loader's shuffled 8192 points): farthest point
  sampling to N from a random first point; then normalized (centroid, max radius 1).

Then the run config's ``data.augment`` (for point-mae the official PointcloudScaleAndTranslate:
per-axis scale U(2/3, 3/2), translation U(-0.2, 0.2)). A sample depends only on ``(seed, epoch,
index)``, as in :class:`CmaDataset`. Labels (not used by pretraining) are the synset / class index.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from cma_builder.errors import CmaError
from cma_builder.geometry.fps import farthest_point_sample
from cma_builder.geometry.normalize import normalize_params
from cma_builder.paths import inside

from ..errors import TrainError
from . import transforms as T
from .transforms import Augment

SHAPENET55_NAME = re.compile(r"^(\d{8})-([A-Za-z0-9_]+)\.npy$")
LAYOUTS = {
    "shapenet55": "ShapeNet-55 (shapenet_pc/*.npy + ShapeNet-55/{train,test}.txt)",
    "modelnet40": "ModelNet40 (modelnet40_normal_resampled or modelnet40_ply_hdf5_2048)",
    "modelnet10": "ModelNet10 (modelnet40_normal_resampled's modelnet10 files, or an h5 folder with 10 shape names)",
}
SAMPLING = {
    "shapenet55": "random N of the stored rows (the official permutation prefix), then normalized",
    "modelnet": "farthest point sampling to N from a random first point (the official misc.fps on shuffled "
                "points), then normalized",
}


def _shapenet55_dirs(path: Path) -> tuple[Path, Path] | None:
    """(list folder, point folder) when ``path`` is ``ShapeNet55-34`` or its ``ShapeNet-55``."""
    if (path / "shapenet_pc").is_dir() and (path / "ShapeNet-55").is_dir():
        return path / "ShapeNet-55", path / "shapenet_pc"
    if (path.parent / "shapenet_pc").is_dir() and any((path / f"{s}.txt").is_file() for s in ("train", "test")):
        return path, path.parent / "shapenet_pc"
    return None


def point_folder_layout(path) -> str | None:
    """"shapenet55", "modelnet40", "modelnet10" for a points-only folder, None otherwise (a cma dataset)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if _shapenet55_dirs(path) is not None:
        return "shapenet55"
    for n in (40, 10):
        if (path / f"modelnet{n}_shape_names.txt").is_file():
            return f"modelnet{n}"
    if (path / "train_files.txt").is_file() and any(path.glob("*.h5")):
        names = path / "shape_names.txt"
        try:
            n = len([s for s in names.read_text("utf-8").splitlines() if s.strip()]) if names.is_file() else 40
        except (OSError, UnicodeDecodeError):
            n = 40
        return "modelnet10" if n == 10 else "modelnet40"
    return None


def _splits(split) -> list[str]:
    splits = ["train", "val", "test"] if split == "all" else [split] if isinstance(split, str) else list(split)
    if not splits:
        raise TrainError("data.split names no split")
    return splits


class PointFolderDataset(torch.utils.data.Dataset):
    """Samples ``{"points": (num_points, 3), "label", "index"}`` of a points-only folder (see module docstring)."""

    kind = "fused"

    def __init__(self, root, split="train", categories=None, num_points: int = 1024, augment: Augment | None = None,
                 seed: int = 0):
        self.root = Path(root)
        self.layout = point_folder_layout(self.root)
        if self.layout is None:
            raise TrainError(f"{root}: not a points-only folder ({'; '.join(LAYOUTS.values())})")
        if num_points < 1:
            raise TrainError(f"num_points must be positive, got {num_points}")
        self.num_points, self.augment, self.seed, self.epoch = num_points, augment, seed, 0
        splits = _splits(split)
        if self.layout == "shapenet55":
            self._init_shapenet55(splits, categories)
        else:
            self._init_modelnet(splits, categories)
        if not len(self.labels):
            raise TrainError(f"{self.root}: no samples in split {'+'.join(splits)}"
                             + (f", categories {categories}" if categories else ""))

    # --- layouts ---------------------------------------------------------------------------
    def _init_shapenet55(self, splits: list[str], categories) -> None:
        lists, pc = _shapenet55_dirs(self.root)
        names, files = [], []
        for s in splits:
            path = lists / f"{s}.txt"
            if not path.is_file():
                if len(splits) > 1:      # "all": the splits the folder has
                    continue
                raise TrainError(f"{lists}: missing {s}.txt (ShapeNet-55 lists: train.txt, test.txt)")
            for k, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                line = line.strip()
                if not line:
                    continue
                m = SHAPENET55_NAME.match(line)
                if not m:
                    raise TrainError(f"{path}: line {k}: {line[:60]!r} is not '<synset>-<model>.npy'")
                try:
                    files.append(inside(pc, line))
                except CmaError as exc:
                    raise TrainError(f"{path}: line {k}: {exc}") from None
                names.append(m.group(1))
        wanted = None if categories is None else {str(c) for c in ([categories] if isinstance(categories, str)
                                                                    else categories)}
        keep = [i for i, s in enumerate(names) if wanted is None or s in wanted]
        self.files = [files[i] for i in keep]
        self.class_names = sorted(set(names))
        self.labels = np.array([self.class_names.index(names[i]) for i in keep], dtype=np.int64)
        for path in self.files:       # headers only: a bad file is named now, not in a loader worker
            self._check_npy(path, self.num_points)
        self.clouds = None
        self.description = f"ShapeNet-55 point folder {self.root.resolve()} ({len(self.files)} clouds, {SAMPLING['shapenet55']})"

    def _check_npy(self, path: Path, rows: int) -> None:
        if not path.is_file():
            raise TrainError(f"{path}: missing (listed in the ShapeNet-55 split file)")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TrainError(f"{path}: not a readable .npy array ({' '.join(str(exc).split())[:100]})") from None
        if arr.ndim != 2 or arr.shape[1] < 3 or arr.dtype.kind != "f" or len(arr) < 1:
            raise TrainError(f"{path}: expected (N, 3) float points, got {arr.dtype} {arr.shape}")
        if len(arr) < rows:   # the official loader indexes N of the stored rows: it needs that many
            raise TrainError(f"{path}: {len(arr)} rows, fewer than data.num_points {rows} (the official loader "
                             f"samples N of the stored rows)")

    def _init_modelnet(self, splits: list[str], categories) -> None:
        from ..eval.modelnet_files import read_raw
        from ..eval.readers import read_modelnet40

        classes = 10 if self.layout == "modelnet10" else 40
        bad = [s for s in splits if s not in ("train", "test", "val")]
        if bad:
            raise TrainError(f"unknown split {bad[0]!r}: ModelNet has train and test")
        splits = [s for s in splits if s != "val"]
        if not splits:
            raise TrainError("ModelNet has no val split: use data.split train, test or all")
        clouds, labels = [], []
        for s in splits:
            if (self.root / f"modelnet{classes}_shape_names.txt").is_file():
                raw = read_raw(self.root, classes, s)
                clouds += raw["clouds"]
                names = raw["names"]
                labels.append(raw["labels"])
            else:
                ps = read_modelnet40(self.root, s, classes=classes)
                clouds += list(ps.points)
                names = ps.class_names
                labels.append(ps.labels)
        labels = np.concatenate(labels)
        if categories is not None:
            wanted = {str(c) for c in ([categories] if isinstance(categories, str) else categories)}
            unknown = wanted - set(names)
            if unknown:
                raise TrainError(f"unknown categories {sorted(unknown)}: {self.root} has {', '.join(names)}")
            keep = [i for i, lab in enumerate(labels) if names[lab] in wanted]
            clouds, labels = [clouds[i] for i in keep], labels[keep]
        short = min((len(c) for c in clouds), default=0)
        if clouds and short < self.num_points:
            raise TrainError(f"{self.root}: its clouds have {short} points, fewer than data.num_points "
                             f"{self.num_points}")
        self.clouds, self.labels, self.class_names, self.files = clouds, labels, list(names), None
        self.description = (f"ModelNet{classes} point folder {self.root.resolve()} ({len(clouds)} clouds, split "
                            f"{'+'.join(splits)}, {SAMPLING['modelnet']})")

    # --- Dataset ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _sample(self, i: int, rng: np.random.Generator) -> np.ndarray:
        if self.files is not None:
            pts = np.load(self.files[i], allow_pickle=False)[:, :3].astype(np.float32)
            n = len(pts)
            return pts[rng.choice(n, self.num_points, replace=False)]
        pts = self.clouds[i]
        start = int(rng.integers(len(pts)))
        idx = farthest_point_sample(pts[None].astype(np.float64), self.num_points, start=start)[0]
        return pts[idx]

    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        i, rng = T.item_rng(item, self.epoch, self.seed, len(self))
        pts = self._sample(i, rng)
        s, t = normalize_params(pts)
        A, t = s * np.eye(3), t
        if self.augment is not None:
            A1, t1 = T.random_similarity(self.augment, rng, False)
            A, t = A1 @ A, A1 @ t + t1
        pts = T.transform_points(pts, A, t)
        if self.augment is not None and self.augment.jitter_sigma > 0:
            pts = T.jitter(pts, rng, self.augment.jitter_sigma, self.augment.jitter_clip)
        return {"points": torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)),
                "label": torch.tensor(self.labels[i]), "index": torch.tensor(i, dtype=torch.int64)}
