"""ModelNet40 / ModelNet10 as the Point-BERT family and PointNet++ distribute them.

``modelnet40_normal_resampled/`` (PointNet++'s release, read by Point-BERT, Point-MAE, ReCon,
ACT, PointGPT through ``datasets/ModelNetDataset.py``)::

    modelnet40_shape_names.txt           40 class names, one per line (label = line number)
    modelnet40_{train,test}.txt          one shape id per line, e.g. "airplane_0627"
    modelnet10_shape_names.txt, modelnet10_{train,test}.txt   the ModelNet10 subset (same folder)
    <class>/<shape id>.txt               10000 rows "x,y,z,nx,ny,nz" (the class is the id without
                                         its trailing "_NNNN")
    modelnet40_{train,test}_8192pts_fps.dat   optional: the official loader's cache, a pickle of
                                         [list of (8192, 6) float32 arrays, list of (1,) int32
                                         labels] in the split file's order (read with
                                         :mod:`safe_pickle`, never plain ``pickle``)

When a ``.dat`` cache is there it is read instead of the text files (it is what the official runs
read); otherwise the text files are parsed.

Sampling to ``num_points`` (named in every result):

* ``fps``: farthest point sampling from the cloud's first row. This is the official test-time path
  (``misc.fps``: pointnet2's ``furthest_point_sample``, which starts at index 0) applied to the
  8192-point cache; on the text files the two official stages (FPS to 8192 at cache time, then FPS
  to N) reduce to one FPS to N from row 0 (a prefix of an FPS ordering is the FPS of that size).
  The official cache's own FPS starts at a random row, so a cache built by another run differs from
  ours in which points were kept, not in how they are spread.
* ``first``: the first N rows (PointNet++'s loader without ``uniform``; the h5 readers of
  CrossPoint and Point-M2AE's SVM, ``data[:, :N]``).

ModelNet10 in the h5 layout: a folder like ``modelnet40_ply_hdf5_2048`` (``train_files.txt``,
``test_files.txt``, ``shape_names.txt`` with 10 names, h5 files with ``data`` / ``label``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from cma_builder.errors import CmaError
from cma_builder.paths import inside

from ..errors import TrainError
from .pointset import PointSet
from .safe_pickle import load_data_pickle

RESAMPLED_LAYOUT = ("the modelnet40_normal_resampled layout is expected (modelnet{n}_shape_names.txt, "
                    "modelnet{n}_{{train,test}}.txt, <class>/<id>.txt)")
SAMPLINGS = {
    "fps": "farthest point sampling to N from the first row (the official test-time misc.fps)",
    "first": "the first N points (the official h5 loaders' data[:, :N])",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*_\d+$")


def resampled_layout(root: Path, classes: int) -> bool:
    """True when ``root`` holds ``modelnet{classes}_shape_names.txt`` (the normal_resampled layout)."""
    return (root / f"modelnet{classes}_shape_names.txt").is_file()


def check_sampling(sampling: str) -> str:
    if sampling not in SAMPLINGS:
        raise TrainError(f"unknown sampling {sampling!r}: expected one of {', '.join(SAMPLINGS)}")
    return sampling


def _lines(path: Path, root: Path, classes: int) -> list[str]:
    if not path.is_file():
        raise TrainError(f"{root}: missing {path.name} ({RESAMPLED_LAYOUT.format(n=classes)})")
    try:
        return [s.strip() for s in path.read_text("utf-8").splitlines() if s.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"{path}: unreadable ({exc.__class__.__name__})") from None


def shape_names(root: Path, classes: int) -> list[str]:
    path = root / f"modelnet{classes}_shape_names.txt"
    names = _lines(path, root, classes)
    if len(names) != classes or len(set(names)) != classes:
        raise TrainError(f"{path}: lists {len(set(names))} distinct class names, expected {classes}")
    return names


def split_ids(root: Path, classes: int, split: str, names: list[str]) -> list[tuple[str, int]]:
    """(shape id, label) per line of ``modelnet{classes}_{split}.txt``; ids are checked (a name read
    from a file never makes a path outside ROOT)."""
    path = root / f"modelnet{classes}_{split}.txt"
    out, label_of = [], {n: i for i, n in enumerate(names)}
    for k, sid in enumerate(_lines(path, root, classes), 1):
        cls = sid.rsplit("_", 1)[0]
        if not _ID.match(sid) or cls not in label_of:
            why = "not a '<class>_<number>' shape id" if not _ID.match(sid) else \
                f"class {cls!r} is not in modelnet{classes}_shape_names.txt"
            raise TrainError(f"{path}: line {k}: {sid[:60]!r}: {why}")
        out.append((sid, label_of[cls]))
    if not out:
        raise TrainError(f"{path}: lists no shapes")
    return out


def parse_rows(path: Path, text: str) -> np.ndarray:
    """(n, 6) float32 of a ``x,y,z,nx,ny,nz`` text file (3 columns accepted: xyz only); a malformed row
    is a one-line error naming the file and line."""
    lines = [s for s in text.splitlines() if s.strip()]
    if not lines:
        raise TrainError(f"{path}: no point rows")
    cols = lines[0].count(",") + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(lines, delimiter=",", dtype=np.float32, ndmin=2, comments=None)
        flat = rows.reshape(-1)
    except ValueError:
        flat = None
    if flat is None or cols not in (3, 6) or len(flat) != cols * len(lines) or not np.isfinite(flat).all():
        for k, line in enumerate(lines, 1):
            fields = [f.strip() for f in line.split(",")]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row = np.array([np.float32(f) if f and "_" not in f else float("x") for f in fields], np.float32)
            except ValueError:
                raise TrainError(f"{path}: line {k}: not numbers ({line.strip()[:60]!r})") from None
            if len(fields) not in (3, 6) or len(fields) != cols:
                raise TrainError(f"{path}: line {k}: expected 6 comma-separated values (x,y,z,nx,ny,nz), got "
                                 f"{len(fields)}")
            if not np.isfinite(row).all():
                raise TrainError(f"{path}: line {k}: not a finite number ({line.strip()[:60]!r})")
        raise TrainError(f"{path}: unreadable point rows")
    return rows


def _read_txt(root: Path, sid: str) -> np.ndarray:
    cls = sid.rsplit("_", 1)[0]
    try:
        path = inside(root, f"{cls}/{sid}.txt")
    except CmaError as exc:
        raise TrainError(f"{root}: {sid}: {exc}") from None
    if not path.is_file():
        raise TrainError(f"{root}: missing {cls}/{sid}.txt, listed in the split file")
    try:   # the fast path: numpy's C parser on the file; any doubt goes through parse_rows for the message
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2, comments=None)
        if rows.shape[1] in (3, 6) and len(rows) and np.isfinite(rows).all():
            return rows[:, :3]
    except (ValueError, UnicodeDecodeError):
        pass
    except OSError as exc:
        raise TrainError(f"{path}: unreadable ({exc.strerror or exc.__class__.__name__})") from None
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"{path}: unreadable ({exc.__class__.__name__})") from None
    return parse_rows(path, text)[:, :3]


def cloud_rows(value, where: str) -> np.ndarray:
    """(N, 3) float32 xyz of one pickled cloud ((N, 3) or (N, 6) floats, finite), or a one-line TrainError."""
    try:
        pts = np.asarray(value)
    except (ValueError, TypeError):
        pts = None
    if pts is None or pts.ndim != 2 or pts.shape[1] not in (3, 6) or pts.dtype.kind != "f" or not len(pts):
        got = "ragged or not an array" if pts is None else f"{pts.dtype} {pts.shape}"
        raise TrainError(f"{where}: points must be an (N, 3) or (N, 6) float array, got {got}")
    xyz = pts[:, :3].astype(np.float32)
    if not np.isfinite(xyz).all():
        raise TrainError(f"{where}: points hold NaN or infinite values")
    return xyz


def integer(value, where: str) -> int:
    """One integer (a Python int, a numpy integer or a size-1 integer array), or a one-line TrainError."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.size != 1 or arr.dtype.kind not in "iu":
        raise TrainError(f"{where} must be one integer")
    return int(arr.reshape(-1)[0])


def dat_files(root: Path, classes: int, split: str) -> list[Path]:
    """The official loader's caches for a split, best first: FPS ones (``_fps.dat``), more points first."""
    found = []
    for path in root.glob(f"modelnet{classes}_{split}_*pts*.dat"):
        m = re.fullmatch(rf"modelnet{classes}_{split}_(\d+)pts(_fps)?\.dat", path.name)
        if m and path.is_file():
            found.append((bool(m.group(2)), int(m.group(1)), path))
    return [p for _, _, p in sorted(found, reverse=True)]


def read_dat(path: Path, classes: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Clouds (xyz of each) and labels of an official ``.dat`` cache, checked."""
    data = load_data_pickle(path, "ModelNet cache (.dat)")
    if not (isinstance(data, (list, tuple)) and len(data) == 2 and all(isinstance(x, (list, tuple)) for x in data)
            and len(data[0]) == len(data[1])):
        raise TrainError(f"{path}: expected [list of point arrays, list of labels] of equal length (the official "
                         "ModelNetDataset cache)")
    points, labels = [], []
    for i, (pts, lab) in enumerate(zip(*data)):
        points.append(cloud_rows(pts, f"{path}: entry {i}"))
        lab = integer(lab, f"{path}: entry {i}: the label")
        if not 0 <= lab < classes:
            raise TrainError(f"{path}: entry {i}: label {lab} is outside 0..{classes - 1}")
        labels.append(lab)
    if not points:
        raise TrainError(f"{path}: holds no clouds")
    return points, np.array(labels, dtype=np.int64)


def sample_clouds(clouds: list[np.ndarray], num_points: int, sampling: str, source,
                  progress: bool | None = False) -> np.ndarray:
    """(N, num_points, 3): each cloud reduced by ``sampling`` (see the module docstring). FPS runs in
    float64 on batches of 8 clouds of one size (small enough to stay in cache: ~30 ms per 10000-point
    cloud on one core)."""
    from cma_builder.geometry.fps import farthest_point_sample

    from ..engine.progress import progress_bar

    check_sampling(sampling)
    short = min(len(c) for c in clouds)
    if num_points < 1 or num_points > short:
        raise TrainError(f"{source}: its smallest cloud has {short} points; {num_points} points per cloud were asked "
                         f"for (--points, or the protocol's)")
    if sampling == "first":
        return np.stack([c[:num_points] for c in clouds])
    out = np.empty((len(clouds), num_points, 3), np.float32)
    by_size: dict[int, list[int]] = {}
    for i, c in enumerate(clouds):
        by_size.setdefault(len(c), []).append(i)
    batches = [rows[lo:lo + 8] for rows in by_size.values() for lo in range(0, len(rows), 8)]
    for part in progress_bar(batches, progress=progress, desc=f"FPS to {num_points}", unit="batch"):
        batch = np.stack([clouds[i] for i in part])
        idx = farthest_point_sample(batch.astype(np.float64), num_points, start=0)
        out[part] = np.take_along_axis(batch, idx[..., None], axis=1)
    return out


def read_raw(root, classes: int, split: str, progress: bool | None = False) -> dict:
    """A split of a ``modelnet40_normal_resampled`` folder before sampling: ``clouds`` (list of (n, 3)),
    ``labels``, ``names``, ``ids``, ``origin`` ("official cache <name>" or "text files"), ``source``."""
    from ..engine.progress import progress_bar

    root = Path(root)
    names = shape_names(root, classes)
    caches = dat_files(root, classes, split)
    if caches:
        clouds, labels = read_dat(caches[0], classes)
        try:
            listed = split_ids(root, classes, split, names)
        except TrainError:
            listed = []
        same = len(listed) == len(labels) and all(lab == y for (_, lab), y in zip(listed, labels))
        ids = [s for s, _ in listed] if same else [f"{caches[0].name}:{i}" for i in range(len(labels))]
        return {"clouds": clouds, "labels": labels, "names": names, "ids": ids, "source": caches[0],
                "origin": f"official cache {caches[0].name}", "root": root, "classes": classes, "split": split}
    listed = split_ids(root, classes, split, names)
    clouds = [_read_txt(root, sid) for sid, _ in progress_bar(listed, progress=progress,
                                                                desc=f"modelnet{classes} {split}", unit="file")]
    return {"clouds": clouds, "labels": np.array([lab for _, lab in listed], dtype=np.int64), "names": names,
            "ids": [s for s, _ in listed], "source": root, "origin": "text files", "root": root, "classes": classes,
            "split": split}


def sampled(raw: dict, num_points: int, sampling: str, progress: bool | None = False) -> PointSet:
    """The :func:`read_raw` split cut to ``num_points`` by ``sampling``."""
    check_sampling(sampling)
    points = sample_clouds(raw["clouds"], num_points, sampling, raw["source"], progress)
    return PointSet(points, raw["labels"], raw["names"], ids=raw["ids"], name=f"modelnet{raw['classes']}/{raw['split']}",
                    origin=f"{raw['root'].name} ({raw['origin']}), {num_points} points, {sampling}: "
                           f"{SAMPLINGS[sampling]}")


def read_modelnet_resampled(root, classes: int, split: str, num_points: int = 1024, sampling: str = "fps",
                            progress: bool | None = False) -> PointSet:
    """ModelNet``classes`` (40 or 10) split "train"/"test" of a ``modelnet40_normal_resampled`` folder
    (its ``.dat`` cache when present); ids are the shape ids (``<dat name>:<row>`` for a cache whose
    length or labels differ from the split file's)."""
    check_sampling(sampling)
    return sampled(read_raw(root, classes, split, progress), num_points, sampling, progress)
