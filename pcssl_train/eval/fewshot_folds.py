"""The Point-BERT family's fixed few-shot folds of ModelNet40 (``ModelNetFewshot/``).

Layout (Point-BERT's ``datasets/generate_few_shot_data.py`` wrote them; Point-MAE, ReCon, ACT,
PointGPT and CrossAlignNet report on the same files)::

    ModelNetFewshot/<way>way_<shot>shot/<fold>.pkl     way 5 or 10, shot 10 or 20, fold 0..9

Each ``.pkl`` is a pickle of ``{'train': [...], 'test': [...]}``, every item a tuple ``(points,
label, class)``: points (8192, 6) float32 from the 8192-point FPS cache, not normalized; ``label``
the class remapped to 0..way-1; ``class`` the ModelNet40 label. The test side holds 20 shapes per
class. Read with :mod:`safe_pickle` (plain data only: a fold file that would run code is refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TrainError
from .modelnet_files import cloud_rows, integer, sample_clouds
from .safe_pickle import load_data_pickle

SETTING = re.compile(r"^(\d+)way_(\d+)shot$")
LAYOUT = "ModelNetFewshot/<way>way_<shot>shot/<fold>.pkl is expected"


@dataclass
class Fold:
    """One official fold: support (``train``) and query (``test``) clouds with labels 0..way-1."""

    ways: int
    shots: int
    fold: int
    train_points: np.ndarray
    train_labels: np.ndarray
    test_points: np.ndarray
    test_labels: np.ndarray
    classes: list[int]          # the ModelNet40 label of each of the way classes (from the items' third field)
    path: Path


def settings(root) -> list[tuple[int, int, Path]]:
    """(ways, shots, folder) of every ``<w>way_<s>shot`` folder under ``root`` (sorted)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise TrainError(f"--folds {root}: " + ("not a folder" if root.exists() else "no such folder"))
    found = []
    for d in root.iterdir():
        m = SETTING.match(d.name)
        if m and d.is_dir():
            found.append((int(m.group(1)), int(m.group(2)), d))
    if not found:
        raise TrainError(f"--folds {root}: no <way>way_<shot>shot folder ({LAYOUT})")
    return sorted(found)


def fold_files(folder: Path) -> list[tuple[int, Path]]:
    files = sorted((int(p.stem), p) for p in folder.glob("*.pkl") if p.stem.isdigit() and p.is_file())
    if not files:
        raise TrainError(f"{folder}: no <fold>.pkl files ({LAYOUT})")
    return files


def _items(data, side: str, path: Path):
    items = data.get(side) if isinstance(data, dict) else None
    if not isinstance(items, (list, tuple)) or not items:
        raise TrainError(f"{path}: expected a dict with non-empty 'train' and 'test' lists (the official few-shot "
                         "fold format)")
    return items


def read_fold(path: Path, ways: int, shots: int, num_points: int = 1024, sampling: str = "fps",
              progress: bool | None = False) -> Fold:
    """One fold file, checked against its folder's setting: ``ways`` classes labelled 0..ways-1, ``shots``
    support clouds each, at least one query each."""
    data = load_data_pickle(path, "few-shot fold (.pkl)")
    out = {}
    classes: dict[int, int] = {}
    for side in ("train", "test"):
        clouds, labels = [], []
        for i, item in enumerate(_items(data, side, path)):
            if not isinstance(item, (list, tuple)) or len(item) < 2:
                raise TrainError(f"{path}: {side} item {i}: expected (points, label, class)")
            xyz = cloud_rows(item[0], f"{path}: {side} item {i}")
            label = integer(item[1], f"{path}: {side} item {i}: the label")
            if not 0 <= label < ways:
                raise TrainError(f"{path}: {side} item {i}: label {label} is outside 0..{ways - 1}: this fold "
                                 f"names more classes than its folder's {ways}-way setting")
            if len(item) > 2:
                try:
                    classes.setdefault(label, integer(item[2], "class"))
                except TrainError:
                    pass
            clouds.append(xyz)
            labels.append(label)
        labels = np.array(labels, dtype=np.int64)
        present = np.unique(labels)
        if len(present) != ways:
            raise TrainError(f"{path}: the {side} side has {len(present)} classes, but its folder says {ways}-way")
        if side == "train":
            counts = np.bincount(labels, minlength=ways)
            if (counts != shots).any():
                raise TrainError(f"{path}: the support set has {counts.min()}..{counts.max()} clouds per class, but its "
                                 f"folder says {shots}-shot")
        out[side] = (sample_clouds(clouds, num_points, sampling, path, progress), labels)
    return Fold(ways, shots, int(path.stem), *out["train"], *out["test"],
                classes=[classes.get(c, -1) for c in range(ways)], path=path)


def available(root) -> dict[tuple[int, int], Path]:
    """(ways, shots) -> folder of every setting under ``root``: the ``ModelNetFewshot`` folder, or one
    setting's own ``<w>way_<s>shot`` folder."""
    root = Path(root).expanduser()
    m = SETTING.match(root.name)
    if m and root.is_dir():
        return {(int(m.group(1)), int(m.group(2))): root}
    return {(w, s): d for w, s, d in settings(root)}


def read_folds(folder: Path, ways: int, shots: int, num_points: int = 1024, sampling: str = "fps",
               progress: bool | None = False) -> list[Fold]:
    """Every fold of one setting's folder (``<ways>way_<shots>shot``)."""
    return [read_fold(p, ways, shots, num_points, sampling, progress) for _, p in fold_files(Path(folder))]


def fold_accuracies(encoder, folds: list[Fold], device="cpu", seed: int = 0) -> list[float]:
    """Per fold: the frozen-feature few-shot SVM (``fewshot.support_query_accuracy``: standardized
    [max ; mean] features, C = 0.1) fit on the support set, its accuracy on the queries."""
    from .features import extract_features
    from .fewshot import support_query_accuracy

    return [support_query_accuracy(extract_features(encoder, f.train_points, device=device), f.train_labels,
                                   extract_features(encoder, f.test_points, device=device), f.test_labels, 0.1, seed)
            for f in folds]
