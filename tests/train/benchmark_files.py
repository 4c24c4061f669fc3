"""Tiny benchmark folders in the layouts the Point-BERT family and PointNet++ distribute:
modelnet40_normal_resampled (text files, optional .dat caches written with plain pickle as the
official ModelNetDataset does), ModelNetFewshot folds (pickles as generate_few_shot_data.py writes
them), ShapeNet-55 (shapenet_pc/*.npy + lists). Classes are separable shapes (an ellipsoid per
class with its own axes), so an SVM on any reasonable feature scores well above chance."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cma_builder.geometry.fps import farthest_point_sample


def class_names(classes: int) -> list[str]:
    return [f"shape{c:02d}" for c in range(classes)]


def shape_cloud(rng: np.random.Generator, label: int, rows: int) -> np.ndarray:
    """(rows, 6) float32 xyz + normals on an ellipsoid whose axes depend on ``label``."""
    axes = np.array([1.0 + 0.15 * (label % 5), 1.0 + 0.2 * ((label // 5) % 4), 0.5 + 0.1 * (label // 20)])
    d = rng.standard_normal((rows, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    xyz = d * axes + rng.normal(0, 0.01, 3)
    n = xyz / axes ** 2
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return np.concatenate([xyz, n], axis=1).astype(np.float32)


def write_resampled(root: Path, classes: int = 40, train: int = 3, test: int = 2, rows: int = 64, seed: int = 0,
                    both: bool = False) -> dict:
    """A ``modelnet40_normal_resampled`` folder; ``both``: ModelNet10 files beside the ModelNet40 ones (the
    first 10 classes). Returns {(classes, split): [(shape id, label, (rows, 6) array)]}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = class_names(40 if both else classes)
    truth: dict = {}
    for split, per in (("train", train), ("test", test)):
        rows_out = []
        for label, name in enumerate(names):
            (root / name).mkdir(exist_ok=True)
            for k in range(per):
                sid = f"{name}_{k + 1 + (0 if split == 'train' else 100):04d}"
                pts = shape_cloud(rng, label, rows)
                (root / name / f"{sid}.txt").write_text("\n".join(",".join(f"{v:.6f}" for v in r) for r in pts) + "\n")
                rows_out.append((sid, label, pts))
        sets = [(len(names), rows_out)] + ([(10, [r for r in rows_out if r[1] < 10])] if both else [])
        for n, items in sets:
            (root / f"modelnet{n}_{split}.txt").write_text("\n".join(s for s, _, _ in items) + "\n")
            truth[(n, split)] = items
    for n in ([40, 10] if both else [classes]):
        (root / f"modelnet{n}_shape_names.txt").write_text("\n".join(names[:n]) + "\n")
    return truth


def write_dat(root: Path, classes: int, split: str, items, npoints: int, protocol: int = 2) -> Path:
    """The official cache: pickle.dump([list of (npoints, 6) float32 FPS points, list of (1,) int32 labels])."""
    pts = [p[farthest_point_sample(p[None, :, :3].astype(np.float64), npoints, start=0)[0]] for _, _, p in items]
    labels = [np.array([lab]).astype(np.int32) for _, lab, _ in items]
    path = root / f"modelnet{classes}_{split}_{npoints}pts_fps.dat"
    with open(path, "wb") as fh:
        pickle.dump([pts, labels], fh, protocol=protocol)
    return path


def write_folds(root: Path, ways: int, shots: int, folds: int = 2, rows: int = 64, queries: int = 4,
                seed: int = 0, protocol: int = 2) -> Path:
    """``ModelNetFewshot/<w>way_<s>shot/<fold>.pkl``: {'train': [(points, i, class)], 'test': [...]}."""
    folder = root / f"{ways}way_{shots}shot"
    folder.mkdir(parents=True, exist_ok=True)
    for fold in range(folds):
        rng = np.random.default_rng([seed, ways, shots, fold])
        keys = rng.choice(40, ways, replace=False)
        data = {"train": [], "test": []}
        for i, key in enumerate(keys):
            data["train"] += [(shape_cloud(rng, int(key), rows), i, np.int32(key)) for _ in range(shots)]
            data["test"] += [(shape_cloud(rng, int(key), rows), i, np.int32(key)) for _ in range(queries)]
        with open(folder / f"{fold}.pkl", "wb") as fh:
            pickle.dump(data, fh, protocol=protocol)
    return folder


def write_shapenet55(root: Path, synsets=("02691156", "03001627", "04379243"), per: int = 4, rows: int = 256,
                     seed: int = 0) -> Path:
    """``ShapeNet55-34``: shapenet_pc/<synset>-<model>.npy float32 (rows, 3) + ShapeNet-55/{train,test}.txt."""
    rng = np.random.default_rng(seed)
    (root / "shapenet_pc").mkdir(parents=True, exist_ok=True)
    (root / "ShapeNet-55").mkdir(exist_ok=True)
    lines = {"train": [], "test": []}
    for s, synset in enumerate(synsets):
        for k in range(per):
            name = f"{synset}-{k:032x}.npy"
            np.save(root / "shapenet_pc" / name, shape_cloud(rng, s, rows)[:, :3])
            lines["test" if k == 0 else "train"].append(name)
    for split, names in lines.items():
        (root / "ShapeNet-55" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root
