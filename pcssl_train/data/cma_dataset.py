"""A torch Dataset over a cma-build dataset, reading its zarr shards in place.

    ds = CmaDataset("shapenet-cma", kind="view", split="train", augment=Augment(flip=0.5))
    sample = ds[0]   # dict of tensors; see docs/TRAINING_DATA.md

Arrays are read through :class:`cma_builder.format.DatasetReader` (straight from the shard files,
one pread + blosc decode per chunk, for the layout cma-build writes; zarr for any other). Everything
cached is per process and rebuilt lazily, so the dataset is safe in DataLoader workers (fork or spawn).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from cma_builder.errors import CmaError
from cma_builder.format import DatasetReader, ObjectRef
from cma_builder.geometry.fps import farthest_point_sample
from cma_builder.geometry.normalize import normalize_params
from cma_builder.format.schema import resolve_categories

from ..errors import TrainError
from . import transforms as T
from .transforms import Augment

KINDS = ("fused", "view", "multiview")
VIEW_CHOICE_ALIASES = {"max-points": "most_points", "max_points": "most_points", "most-points": "most_points"}
SPLITS = ("train", "val", "test")
SAMPLINGS = ("random", "fps", "first")
SMALL_ARRAYS = ("fused_point_count", "view_point_count", "view_foreground")  # cached whole per shard


def sample_indices(n: int, m: int, method: str, rng: np.random.Generator, points: np.ndarray) -> np.ndarray:
    """``m`` row indices among the first ``n`` distinct rows of ``points``. "random": without
    replacement when n >= m, else every row plus m - n drawn with replacement; "fps": farthest
    point sampling from row 0 (cycled when n < m); "first": rows 0..m-1 (cycled). n = 0: zeros."""
    if n <= 0:
        return np.zeros(m, dtype=np.int64)
    if method == "random":
        if n >= m:
            return rng.choice(n, m, replace=False)
        return np.concatenate([np.arange(n), rng.integers(0, n, m - n)])
    if method == "fps":
        return farthest_point_sample(points[None, :n].astype(np.float64), m, start=0)[0]  # float64 distances
    return np.arange(m) % n


class CmaDataset(torch.utils.data.Dataset):
    """Samples of a cma-build dataset (kinds "fused", "view", "multiview"; keys in docs/TRAINING_DATA.md).

    ``split``: "train", "val", "test", "all" or a list; ``categories``: synset ids or names;
    ``views``: views per multiview sample (None = all); ``view_choice``: "random", "most_points"
    (largest ``view_foreground`` first) or an int (that view, then the next ones);
    ``num_view_points``: points per view in multiview samples (None = num_points);
    ``view_points=False`` leaves the per-view clouds out of multiview samples (no read of them).
    Randomness comes from ``np.random.default_rng([seed, epoch, index])``: a sample depends only
    on those. ``ds[(epoch, i)]`` reads sample i of that epoch (for persistent workers)."""

    def __init__(self, root, kind: str = "fused", split="train", categories=None, num_points: int = 1024,
                 sampling: str = "random", normalize: bool = True, augment: Augment | None = None,
                 views: int | None = None, view_choice="random", seed: int = 0, image: bool = True,
                 with_fused: bool = False, num_view_points: int | None = None, view_points: bool = True):
        view_choice = VIEW_CHOICE_ALIASES.get(view_choice, view_choice) if isinstance(view_choice, str) else view_choice
        if kind not in KINDS:
            raise TrainError(f"unknown sample kind '{kind}': expected one of {', '.join(KINDS)}")
        if sampling not in SAMPLINGS:
            raise TrainError(f"unknown sampling '{sampling}': expected one of {', '.join(SAMPLINGS)}")
        if not (view_choice in ("random", "most_points") or isinstance(view_choice, int)):
            raise TrainError(f"unknown view_choice {view_choice!r}: expected 'random', 'most_points' or a view index")
        if num_points < 1 or (views is not None and views < 1):
            raise TrainError(f"num_points and views must be positive (got {num_points}, {views})")
        splits = list(SPLITS) if split == "all" else [split] if isinstance(split, str) else list(split)
        bad = [s for s in splits if s not in SPLITS]
        if bad or not splits:
            raise TrainError(f"unknown split {bad[0] if bad else split!r}: expected train, val, test, all or a list")
        try:
            reader = DatasetReader.open(root)
            rows = reader.index_rows()
        except CmaError as exc:
            raise TrainError(str(exc)) from None
        self.reader, self.root = reader, reader.root
        self.kind, self.num_points, self.sampling, self.normalize = kind, num_points, sampling, normalize
        self.augment, self.views, self.view_choice, self.seed = augment, views, view_choice, seed
        self.image, self.with_fused, self.view_points = image, with_fused, view_points
        self.num_view_points = num_view_points or num_points
        self.label_names: list[str] = list(reader.attrs["label_names"])
        self.category_names: list[str] = list(reader.attrs.get("label_categories", []))
        self.resolution = int(reader.settings.resolution)
        self.epoch = 0
        synsets = None
        if categories is not None:
            try:
                synsets = set(resolve_categories(reader.attrs, [categories] if isinstance(categories, str)
                                                 else list(categories), self.label_names))
            except CmaError as exc:
                raise TrainError(str(exc)) from None
        rows = [r for r in rows if r["status"] == "done" and r.get("split") in splits
                and (synsets is None or r["synset_id"] in synsets)]
        if not rows:
            cats = "" if categories is None else f", categories {categories}"
            raise TrainError(f"{self.root}: no rendered objects in split {'+'.join(splits)}{cats}")
        self.objects: list[ObjectRef] = reader.objects(rows)
        self.labels = np.array([int(r["label"]) if r.get("label", "").lstrip("-").isdigit() else -1 for r in rows],
                               dtype=np.int64)
        needed = self.required_arrays(kind, image=image, with_fused=with_fused, view_points=view_points)
        missing = [a for a in needed if a not in reader.attrs["arrays"]]
        if missing:
            raise TrainError(f"{self.root}: the dataset has no {', '.join(missing)}, needed by sample kind "
                             f"'{kind}' (render it again with the current cma-build)")
        try:
            reader.verify(self.objects)  # a missing shard or array, a wrong shape, ids the shards do not store
        except CmaError as exc:
            raise TrainError(str(exc)) from None
        self._cache: dict | None = None

    @staticmethod
    def required_arrays(kind: str, image: bool = True, with_fused: bool = False, view_points: bool = True) -> list[str]:
        """Arrays a sample kind reads."""
        fused = ["fused_points", "fused_point_count"]
        clouds = ["view_points", "view_pixels"] if view_points or kind != "multiview" else []
        cams = clouds + ["view_point_count", "K", "world_to_cam"] + (["rgb"] if image else [])
        if kind == "fused":
            return fused
        if kind == "view":
            return cams + ["view_foreground"] + (fused if with_fused else [])
        if kind == "multiview":
            return fused + cams + ["view_foreground"]
        raise TrainError(f"unknown sample kind '{kind}': expected one of {', '.join(KINDS)}")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def __len__(self) -> int:
        return len(self.objects)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # --- per-process reading (override _read/_small to read another store) ----------------
    def __getstate__(self):
        return dict(self.__dict__, _cache=None)

    def _state(self) -> dict:
        if self._cache is None or self._cache["pid"] != os.getpid():
            self._cache = {"pid": os.getpid(), "small": {}}
        return self._cache

    def _read(self, name: str, j: int, view: int | None = None) -> np.ndarray:
        """Object j's row of array ``name`` (or one view of it)."""
        return self.reader.read(self.objects[j], name, view)

    def view_point_counts(self, j: int) -> np.ndarray:
        """(V,) number of points each view of object j back-projected (``view_point_count``)."""
        return self._small("view_point_count", j)

    def _small(self, name: str, j: int) -> np.ndarray:
        """Like _read for the small SMALL_ARRAYS, cached whole per shard for the process."""
        obj = self.objects[j]
        small = self._state()["small"]
        key = (obj.shard, name)
        if key not in small:
            small[key] = self.reader.read_shard(obj.shard, name)
        return small[key][obj.row]

    # --- samples --------------------------------------------------------------------------
    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        i, rng = T.item_rng(item, self.epoch, self.seed, len(self))
        out = getattr(self, f"_{self.kind}")(i, rng)
        out["label"] = torch.tensor(self.labels[i])
        out["index"] = torch.tensor(i, dtype=torch.int64)
        return out

    def _fused_points(self, j: int, rng) -> np.ndarray:
        pts = self._read("fused_points", j)
        return pts[sample_indices(int(self._small("fused_point_count", j)), self.num_points, self.sampling, rng, pts)]

    def _frame(self, stats: np.ndarray, rng, cameras: bool) -> tuple[np.ndarray, np.ndarray]:
        """(A, t): normalization then the random similarity, composed into one transform."""
        A, t = np.eye(3), np.zeros(3)
        if self.normalize:
            s, t = normalize_params(stats)
            A = s * A
        if self.augment is not None:
            A1, t1 = T.random_similarity(self.augment, rng, cameras)
            A, t = A1 @ A, A1 @ t + t1
        return A, t

    def _points(self, points: np.ndarray, A, t, rng) -> torch.Tensor:
        points = T.transform_points(points, A, t)
        aug = self.augment
        if aug is not None and aug.jitter_sigma > 0:
            points = T.jitter(points, rng, aug.jitter_sigma, aug.jitter_clip)
        return torch.from_numpy(points)

    def _image(self, rgb: np.ndarray, rng) -> torch.Tensor:
        """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1], color-jittered per view."""
        img = np.moveaxis(rgb, -1, -3).astype(np.float32) * np.float32(1 / 255)
        aug = self.augment
        if aug is not None and aug.color:
            flat = img.reshape(-1, *img.shape[-3:])
            img = np.stack([T.color_jitter(x, rng, aug.brightness, aug.contrast, aug.saturation) for x in flat])
            img = img.reshape(rgb.shape[:-3] + img.shape[-3:])
        return torch.from_numpy(np.ascontiguousarray(img))

    def _choose_views(self, j: int, k: int, rng) -> np.ndarray:
        counts = self._small("view_point_count", j)
        V = len(counts)
        k = min(k, V)
        if k == V:
            return np.arange(V)
        if self.view_choice == "random":
            full, empty = np.flatnonzero(counts > 0), np.flatnonzero(counts <= 0)
            order = np.concatenate([rng.permutation(full), rng.permutation(empty)])
        elif self.view_choice == "most_points":
            order = np.argsort(-self._small("view_foreground", j), kind="stable")
        else:
            order = (int(self.view_choice) + np.arange(V)) % V
        return np.sort(order[:k])

    def _fused(self, j: int, rng) -> dict:
        pts = self._fused_points(j, rng)
        A, t = self._frame(pts, rng, cameras=False)
        return {"points": self._points(pts, A, t, rng)}

    def _view(self, j: int, rng) -> dict:
        view = int(self._choose_views(j, 1, rng)[0])
        n = int(self._small("view_point_count", j)[view])
        vp, vpix = self._read("view_points", j, view), self._read("view_pixels", j, view)
        idx = sample_indices(n, self.num_points, self.sampling, rng, vp)
        points, pixels = vp[idx], vpix[idx].astype(np.int64)
        K, w2c = self._read("K", j, view), self._read("world_to_cam", j, view)
        rgb = self._read("rgb", j, view) if self.image else None
        fused = self._fused_points(j, rng) if self.with_fused else None
        aug = self.augment
        if aug is not None and aug.flip > 0 and rng.random() < aug.flip:
            points, pixels, rgb, K, fused = T.flip_view(points, pixels, rgb, K, w2c, self.resolution, fused)
        A, t = self._frame(fused if fused is not None else points, rng, cameras=True)
        out = {"points": self._points(points, A, t, rng), "pixels": torch.from_numpy(pixels)}
        if fused is not None:
            out["fused"] = self._points(fused, A, t, rng)
        if rgb is not None:
            out["rgb"] = self._image(rgb, rng)
        out["K"] = torch.from_numpy(K.astype(np.float32))
        out["world_to_cam"] = torch.from_numpy(T.transform_cameras(w2c, A, t).astype(np.float32))
        out["view"] = torch.tensor(view, dtype=torch.int64)
        return out

    def _multiview(self, j: int, rng) -> dict:
        counts = self._small("view_point_count", j)
        views = self._choose_views(j, self.views or len(counts), rng)
        fused = self._fused_points(j, rng)
        if self.view_points:
            vp, vpix = self._read("view_points", j), self._read("view_pixels", j)
            idx = [sample_indices(int(counts[v]), self.num_view_points, self.sampling, rng, vp[v]) for v in views]
            view_points = np.stack([vp[v][i] for v, i in zip(views, idx)])
            view_pixels = np.stack([vpix[v][i] for v, i in zip(views, idx)]).astype(np.int64)
        K, w2c = self._read("K", j)[views], self._read("world_to_cam", j)[views]
        A, t = self._frame(fused, rng, cameras=True)
        out = {"points": self._points(fused, A, t, rng)}
        if self.view_points:
            out["view_points"] = self._points(view_points.reshape(-1, 3), A, t, rng).reshape(view_points.shape)
            out["view_pixels"] = torch.from_numpy(view_pixels)
        if self.image:
            rgb = self._read("rgb", j) if len(views) == len(counts) else np.stack(
                [self._read("rgb", j, int(v)) for v in views])
            out["rgb"] = self._image(rgb, rng)
        out["K"] = torch.from_numpy(K.astype(np.float32))
        out["world_to_cam"] = torch.from_numpy(T.transform_cameras(w2c, A, t).astype(np.float32))
        out["views"] = torch.from_numpy(views.astype(np.int64))
        return out
