"""Readers for the standard downstream benchmarks already on disk (nothing is ever downloaded).

Each reader returns a :class:`~pcssl_train.eval.pointset.PointSet`; user problems (missing folder or
file, wrong keys or shapes, unknown split or variant) raise a one-line :class:`TrainError`.

Expected layouts (the official releases):

ModelNet40 / ModelNet10 (:func:`read_modelnet`): ``modelnet40_normal_resampled/`` (text files and the
Point-BERT family's ``.dat`` caches; see :mod:`.modelnet_files`), or ``modelnet40_ply_hdf5_2048/``
(ModelNet10: a folder in the same layout with 10 class names)::

    train_files.txt, test_files.txt   one h5 file per line, e.g.
                                      data/modelnet40_ply_hdf5_2048/ply_data_train0.h5
                                      (resolved by basename inside the folder)
    shape_names.txt                   the 40 class names, one per line (optional: else "0".."39")
    ply_data_{train0..4,test0..1}.h5  data (N, 2048, 3) float32, label (N, 1) uint8
                                      (normal, faceId may exist and are ignored)

ScanObjectNN, ``h5_files/`` (:func:`read_scanobjectnn`)::

    main_split/{training,test}_objectdataset.h5                           OBJ-BG
    main_split_nobg/{training,test}_objectdataset.h5                      OBJ-ONLY
    main_split/{training,test}_objectdataset_augmentedrot_scale75.h5      PB-T50-RS
    keys: data (N, 2048, 3) float32, label (N,) or (N, 1) int, mask (ignored)

  The root may also be the ``main_split``/``main_split_nobg`` folder itself, or hold the h5 directly.

ShapeNetPart, ``shapenetcore_partanno_segmentation_benchmark_v0_normal/`` (:func:`read_shapenetpart`)::

    synsetoffset2category.txt         "Airplane<TAB>02691156" per line; class order = line order
    <synset>/<model>.txt              rows "x y z nx ny nz part" (part: global id 0..49)
    train_test_split/shuffled_{train,val,test}_file_list.json
                                      JSON list of "shape_data/<synset>/<model>"

cma: a ``cma-build render`` dataset, read through :class:`~pcssl_train.data.CmaDataset` (:func:`read_cma`).

For the h5 sets, ``num_points`` below the stored count keeps the first ``num_points`` points of each
cloud (as the official loaders do).
"""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np

from cma_builder.errors import CmaError
from cma_builder.paths import check_name, inside

from ..errors import TrainError
from .pointset import PointSet

BENCHMARKS = ("modelnet40", "modelnet10", "scanobjectnn", "shapenetpart", "cma")

MODELNET40_LAYOUT = "the official modelnet40_ply_hdf5_2048 layout is expected"
SCANOBJECTNN_LAYOUT = "the official ScanObjectNN h5_files layout (main_split/, main_split_nobg/) is expected"
SHAPENETPART_LAYOUT = "the official shapenetcore_partanno_segmentation_benchmark_v0_normal layout is expected"

SCANOBJECTNN_CLASSES = ["bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
                        "pillow", "sink", "sofa", "toilet"]
# variant -> (folder, file stem); the split prefix is "training_" or "test_"
SCANOBJECTNN_VARIANTS = {
    "obj_bg": ("main_split", "objectdataset.h5"),
    "obj_only": ("main_split_nobg", "objectdataset.h5"),
    "pb_t50_rs": ("main_split", "objectdataset_augmentedrot_scale75.h5"),
}

# The standard ShapeNetPart category -> global part ids (50 parts over 16 categories).
SHAPENETPART_PARTS = {
    "airplane": [0, 1, 2, 3], "bag": [4, 5], "cap": [6, 7], "car": [8, 9, 10, 11], "chair": [12, 13, 14, 15],
    "earphone": [16, 17, 18], "guitar": [19, 20, 21], "knife": [22, 23], "lamp": [24, 25, 26, 27],
    "laptop": [28, 29], "motorbike": [30, 31, 32, 33, 34, 35], "mug": [36, 37], "pistol": [38, 39, 40],
    "rocket": [41, 42, 43], "skateboard": [44, 45, 46], "table": [47, 48, 49],
}
SHAPENETPART_SPLITS = {"train": ("train",), "val": ("val",), "test": ("test",), "trainval": ("train", "val")}
SHAPENETPART_COLUMNS = 7  # x y z nx ny nz part


# --- shared helpers ---------------------------------------------------------------------------
def _folder(root) -> Path:
    """``root`` as a Path, or TrainError when it is not an existing folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise TrainError(f"{path}: no such folder")
    if not path.is_dir():
        raise TrainError(f"{path}: not a folder")
    return path


def _check_split(split, choices, what: str) -> str:
    if split not in choices:
        raise TrainError(f"unknown {what} split {split!r}: expected one of {', '.join(choices)}")
    return split


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``data`` (N, P, 3) float32 and ``label`` (N,) int64 of one benchmark h5 file."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("data", "label") if k not in f]
            if missing:
                raise TrainError(f"{path}: no '{missing[0]}' dataset (keys: {', '.join(sorted(f.keys())) or 'none'})")
            data, label = f["data"][()], f["label"][()]
    except OSError as exc:
        raise TrainError(f"{path}: not a readable HDF5 file ({' '.join(str(exc).split())})") from None
    if data.ndim != 3 or data.shape[-1] != 3:
        raise TrainError(f"{path}: 'data' must be (N, P, 3) points, got shape {data.shape}")
    if label.ndim > 2 or label.size != len(data) or label.dtype.kind not in "iuf":
        raise TrainError(f"{path}: 'label' must hold one integer label per cloud ({len(data)}), "
                         f"got {label.dtype} shape {label.shape}")
    return data.astype(np.float32, copy=False), label.reshape(-1).astype(np.int64)


def _first_points(points: np.ndarray, num_points: int | None, source: Path) -> np.ndarray:
    """The first ``num_points`` points of each cloud (all of them for None)."""
    if num_points is None:
        return points
    if num_points < 1 or num_points > points.shape[1]:
        raise TrainError(f"{source}: num_points must be 1..{points.shape[1]} (the clouds' stored size), "
                         f"got {num_points}")
    return points[:, :num_points]


def _cut(points: np.ndarray, num_points: int | None, sampling: str, source: Path) -> tuple[np.ndarray, str]:
    """The h5 clouds cut to ``num_points`` by ``sampling`` (None: all stored points), and the words that
    say how (for ``PointSet.origin``)."""
    from .modelnet_files import SAMPLINGS, sample_clouds

    if num_points is not None and sampling == "fps":
        points = sample_clouds(list(points), num_points, "fps", source)
    n = points.shape[1] if num_points is None else num_points
    return _first_points(points, num_points, source), f"{n} points, {sampling}: {SAMPLINGS[sampling]}"


def _check_labels(labels: np.ndarray, class_names: list[str], source: Path) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise TrainError(f"{source}: labels must be 0..{len(class_names) - 1}, found "
                         f"{labels.min()}..{labels.max()}")


# --- ModelNet40 -------------------------------------------------------------------------------
def _modelnet_files(root: Path, split: str) -> list[Path]:
    """The h5 files listed in ``{split}_files.txt``, resolved by basename inside ``root``."""
    listing = root / f"{split}_files.txt"
    if not listing.is_file():
        raise TrainError(f"{root}: missing {listing.name} ({MODELNET40_LAYOUT})")
    files = []
    for line in listing.read_text("utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        found = next((c for c in _inside_candidates(root, line) if c.is_file()), None)
        if found is None:
            raise TrainError(f"{root}: missing {Path(line).name}, listed in {listing.name} ({MODELNET40_LAYOUT})")
        files.append(found)
    if not files:
        raise TrainError(f"{listing}: lists no h5 files ({MODELNET40_LAYOUT})")
    return files


def _inside_candidates(root: Path, line: str) -> list[Path]:
    """Where a listed h5 file may be: ROOT/<its name>, ROOT/<the listed path>; only those inside ROOT
    (the listing is a file someone else wrote: it never leads the reader elsewhere)."""
    found = []
    for rel in (Path(line).name, line):
        try:
            found.append(inside(root, rel))
        except CmaError:
            pass
    return found


def _modelnet_names(root: Path, labels: np.ndarray, classes: int = 40) -> list[str]:
    """Class names from ``shape_names.txt``, else "0".."classes-1" (more if the labels need them)."""
    names_file = root / "shape_names.txt"
    if names_file.is_file():
        names = [s.strip() for s in names_file.read_text("utf-8").splitlines() if s.strip()]
        if len(names) != classes:
            raise TrainError(f"{names_file}: lists {len(names)} class names, expected {classes} for ModelNet{classes}")
        return names
    top = int(labels.max()) + 1 if len(labels) else 0
    if top > classes:
        raise TrainError(f"{root}: labels go up to {top - 1}, more than ModelNet{classes}'s {classes} classes (and there "
                         "is no shape_names.txt to say otherwise)")
    return [str(i) for i in range(classes)]


def read_modelnet40(root, split: str, num_points: int | None = None, classes: int = 40,
                    sampling: str = "first") -> PointSet:
    """ModelNet40 (``modelnet40_ply_hdf5_2048``; ModelNet10 in the same layout with ``classes=10``) split
    "train" or "test"; ids ``"<h5 name>:<row>"``. ``sampling`` "first" (the official h5 loaders) or "fps"."""
    from .modelnet_files import check_sampling

    root = _folder(root)
    _check_split(split, ("train", "test"), f"ModelNet{classes}")
    check_sampling(sampling)
    points, labels, ids = [], [], []
    for path in _modelnet_files(root, split):
        data, label = _read_h5(path)
        points.append(data)
        labels.append(label)
        ids += [f"{path.name}:{i}" for i in range(len(data))]
    if len({p.shape[1] for p in points}) > 1:
        raise TrainError(f"{root}: the {split} h5 files hold clouds of different sizes")
    points, labels = np.concatenate(points), np.concatenate(labels)
    class_names = _modelnet_names(root, labels, classes)
    _check_labels(labels, class_names, root)
    points, how = _cut(points, num_points, sampling, root)
    return PointSet(points, labels, class_names, ids=ids, name=f"modelnet{classes}/{split}",
                    origin=f"{root.name} (h5), {how}")


def modelnet_layout(root, classes: int = 40) -> str:
    """"resampled" (``modelnet40_normal_resampled``) or "h5" (``modelnet40_ply_hdf5_2048``) for ``root``;
    a one-line error when it is neither."""
    from .modelnet_files import resampled_layout

    root = _folder(root)
    if resampled_layout(root, classes):
        return "resampled"
    if (root / "train_files.txt").is_file() or (root / "test_files.txt").is_file():
        return "h5"
    other = 10 if classes == 40 else 40
    hint = (f"; it holds modelnet{other}_shape_names.txt: use -b modelnet{other}"
            if resampled_layout(root, other) else "")
    raise TrainError(f"{root}: not a ModelNet{classes} folder: expected modelnet{classes}_shape_names.txt "
                     f"(modelnet40_normal_resampled) or train_files.txt ({MODELNET40_LAYOUT}){hint}")


def read_modelnet(root, split: str, classes: int = 40, num_points: int | None = None, sampling: str | None = None,
                  progress: bool | None = False) -> PointSet:
    """ModelNet40 / ModelNet10 in either distributed layout (see ``modelnet_files``); ``sampling``
    defaults to each layout's official one: "fps" for normal_resampled, "first" for h5."""
    from .modelnet_files import read_modelnet_resampled

    _check_split(split, ("train", "test"), f"ModelNet{classes}")
    layout = modelnet_layout(root, classes)
    if layout == "resampled":
        return read_modelnet_resampled(_folder(root), classes, split, 1024 if num_points is None else num_points,
                                       sampling or "fps", progress=progress)
    return read_modelnet40(root, split, num_points, classes=classes, sampling=sampling or "first")


# --- ScanObjectNN -----------------------------------------------------------------------------
def scanobjectnn_variant(variant) -> str:
    """Canonical variant name ("obj_bg", "obj_only", "pb_t50_rs") from it or its paper name."""
    key = str(variant).strip().lower().replace("-", "_")
    if key not in SCANOBJECTNN_VARIANTS:
        raise TrainError(f"unknown ScanObjectNN variant {variant!r}: expected one of "
                         f"{', '.join(SCANOBJECTNN_VARIANTS)} (or OBJ-BG, OBJ-ONLY, PB-T50-RS)")
    return key


def _scanobjectnn_file(root: Path, variant: str, split: str) -> Path:
    """The h5 file of a variant and split under ``root`` (h5_files, its split folder, or the file's folder)."""
    folder, stem = SCANOBJECTNN_VARIANTS[variant]
    name = f"{'training' if split == 'train' else 'test'}_{stem}"
    folders = {f for f, _ in SCANOBJECTNN_VARIANTS.values()}
    if root.name == folder:
        candidates = [root / name]
    elif root.name in folders:  # the other split folder: look at its sibling
        candidates = [root.parent / folder / name]
    else:
        candidates = [root / folder / name, root / name]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise TrainError(f"{root}: missing {folder}/{name} for {variant} {split} ({SCANOBJECTNN_LAYOUT})")
    return found


def read_scanobjectnn(root, variant: str, split: str, num_points: int | None = None,
                      sampling: str = "first") -> PointSet:
    """ScanObjectNN variant ("obj_bg", "obj_only", "pb_t50_rs" or OBJ-BG, ...) split "train" or "test";
    ``sampling`` "first" (the official loaders) or "fps" to ``num_points``."""
    from .modelnet_files import check_sampling

    root = _folder(root)
    variant = scanobjectnn_variant(variant)
    _check_split(split, ("train", "test"), "ScanObjectNN")
    check_sampling(sampling)
    path = _scanobjectnn_file(root, variant, split)
    points, labels = _read_h5(path)
    _check_labels(labels, SCANOBJECTNN_CLASSES, path)
    points, how = _cut(points, num_points, sampling, path)
    return PointSet(points, labels, list(SCANOBJECTNN_CLASSES), ids=[f"{path.name}:{i}" for i in range(len(points))],
                    name=f"scanobjectnn-{variant}/{split}", origin=f"{path.name}, {how}")


# --- ShapeNetPart -----------------------------------------------------------------------------
def _shapenetpart_categories(root: Path) -> list[tuple[str, str]]:
    """(name, synset) per line of ``synsetoffset2category.txt``, in file order."""
    path = root / "synsetoffset2category.txt"
    if not path.is_file():
        raise TrainError(f"{root}: missing synsetoffset2category.txt ({SHAPENETPART_LAYOUT})")
    cats = []
    for k, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise TrainError(f"{path}: line {k}: expected '<category name> <synset id>', got {line.strip()!r}")
        cats.append((" ".join(parts[:-1]), parts[-1]))
    if not cats:
        raise TrainError(f"{path}: lists no categories ({SHAPENETPART_LAYOUT})")
    return cats


def _shapenetpart_entries(root: Path, split: str) -> list[tuple[str, str]]:
    """(synset, model) of each entry of the split's file list(s), in list order."""
    entries = []
    for part in SHAPENETPART_SPLITS[split]:
        path = root / "train_test_split" / f"shuffled_{part}_file_list.json"
        if not path.is_file():
            raise TrainError(f"{root}: missing train_test_split/{path.name} ({SHAPENETPART_LAYOUT})")
        try:
            items = json.loads(path.read_text("utf-8"))
        except ValueError as exc:
            raise TrainError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(items, list) or not all(isinstance(s, str) and s.count("/") >= 1 for s in items):
            raise TrainError(f"{path}: expected a JSON list of 'shape_data/<synset>/<model>' strings")
        entries += [tuple(s.rstrip("/").split("/")[-2:]) for s in items]
    return entries


def _bad_row(path: Path, lines: list[str]) -> TrainError:
    """The error for the first row of a ShapeNetPart txt that is not 7 numbers."""
    for k, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            [float(v) for v in fields]
        except ValueError:
            return TrainError(f"{path}: line {k}: not numbers ({line.strip()[:60]!r})")
        if len(fields) != SHAPENETPART_COLUMNS:
            return TrainError(f"{path}: line {k}: expected {SHAPENETPART_COLUMNS} columns (x y z nx ny nz part), "
                              f"got {len(fields)}")
    return TrainError(f"{path}: unreadable point rows")


def read_part_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """xyz (n, 3) float32 and part labels (n,) int64 of one ShapeNetPart ``<model>.txt``."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"{path}: unreadable ({exc.__class__.__name__})") from None
    lines = text.splitlines()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(lines, dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        raise _bad_row(path, lines) from None
    if rows.size == 0:
        raise TrainError(f"{path}: no point rows")
    if rows.shape[1] != SHAPENETPART_COLUMNS:
        raise _bad_row(path, lines)
    return rows[:, :3].astype(np.float32), np.rint(rows[:, 6]).astype(np.int64)


def resample(n: int, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """``num_points`` row indices of ``n``: without replacement when n >= num_points, else with."""
    return rng.choice(n, num_points, replace=n < num_points)


def read_shapenetpart(root, split: str, num_points: int = 2048, seed: int = 0) -> PointSet:
    """ShapeNetPart (normal release) split "train", "val", "test" or "trainval", each shape resampled to
    ``num_points`` with ``np.random.default_rng([seed, crc32(id)])``; ids ``"<synset>/<model>"``."""
    root = _folder(root)
    _check_split(split, tuple(SHAPENETPART_SPLITS), "ShapeNetPart")
    if num_points < 1:
        raise TrainError(f"num_points must be positive, got {num_points}")
    cats = _shapenetpart_categories(root)
    label_of = {synset: c for c, (_, synset) in enumerate(cats)}
    entries = [(s, m) for s, m in _shapenetpart_entries(root, split) if s in label_of]
    if not entries:
        raise TrainError(f"{root}: the {split} file list names no shape of the categories in "
                         "synsetoffset2category.txt")
    points, seg, labels, ids = [], [], [], []
    seen: list[set[int]] = [set() for _ in cats]
    for synset, model in entries:
        try:   # names from the file list: never a path outside ROOT
            path = inside(root, f"{check_name(synset, 'synset')}/{check_name(model, 'model')}.txt")
        except CmaError as exc:
            raise TrainError(f"{root}: the {split} file list names {synset}/{model}: {exc}") from None
        if not path.is_file():
            raise TrainError(f"{root}: missing {synset}/{model}.txt, listed in the {split} file list "
                             f"({SHAPENETPART_LAYOUT})")
        xyz, parts = read_part_file(path)
        c = label_of[synset]
        _check_parts(path, cats[c][0], parts)
        sample_id = f"{synset}/{model}"
        rng = np.random.default_rng([seed, zlib.crc32(sample_id.encode())])
        idx = resample(len(xyz), num_points, rng)
        points.append(xyz[idx])
        seg.append(parts[idx])
        labels.append(c)
        ids.append(sample_id)
        seen[c].update(np.unique(parts).tolist())
    parts_of_class = [list(SHAPENETPART_PARTS.get(name.lower(), sorted(seen[c]))) for c, (name, _) in enumerate(cats)]
    return PointSet(np.stack(points), np.array(labels), [name for name, _ in cats], seg=np.stack(seg),
                    parts_of_class=parts_of_class, ids=ids, name=f"shapenetpart/{split}")


def _check_parts(path: Path, category: str, parts: np.ndarray) -> None:
    """Part labels must be non-negative, and among the standard parts of a standard category."""
    allowed = SHAPENETPART_PARTS.get(category.lower())
    bad = parts[parts < 0] if allowed is None else parts[~np.isin(parts, allowed)]
    if len(bad):
        expect = "non-negative" if allowed is None else f"{allowed[0]}..{allowed[-1]} for {category}"
        raise TrainError(f"{path}: part label {int(bad[0])} is not a {category} part (expected {expect})")


# --- cma (this toolkit's own rendered dataset) ------------------------------------------------
def read_cma(root, split: str, num_points: int = 1024, sampling: str = "fps", seed: int = 0) -> PointSet:
    """The fused clouds of a ``cma-build render`` dataset split ("train", "val", "test" or "all"),
    unnormalized, not augmented; ids ``"<synset>/<model>"``."""
    from ..data.cma_dataset import CmaDataset

    _check_split(split, ("train", "val", "test", "all"), "cma")
    ds = CmaDataset(root, kind="fused", split=split, num_points=num_points, sampling=sampling, normalize=False,
                    augment=None, seed=seed)
    points = np.stack([ds[i]["points"].numpy() for i in range(len(ds))])
    ids = [f"{o.synset_id}/{o.model_id}" if hasattr(o, "synset_id") and hasattr(o, "model_id") else str(i)
           for i, o in enumerate(ds.objects)]
    class_names = list(ds.category_names) or list(ds.label_names)
    return PointSet(points, ds.labels, class_names, ids=ids, name=f"cma/{split}")


# --- dispatch ---------------------------------------------------------------------------------
def load_benchmark(name: str, root, split: str, variant: str | None = None, num_points: int | None = None,
                   seed: int = 0, sampling: str | None = None, progress: bool | None = False) -> PointSet:
    """Read benchmark ``name`` (one of :data:`BENCHMARKS`). ``variant`` is ScanObjectNN's (required there);
    ``num_points`` defaults to 2048 (shapenetpart), 1024 (cma, ModelNet normal_resampled), all stored
    points (h5 sets); ``sampling`` ("first" or "fps") applies to ModelNet and ScanObjectNN."""
    key = str(name).strip().lower()
    if key not in BENCHMARKS:
        raise TrainError(f"unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}")
    if sampling is not None and key not in ("modelnet40", "modelnet10", "scanobjectnn"):
        raise TrainError(f"--sampling applies to modelnet40, modelnet10 and scanobjectnn, not {key}")
    if key == "scanobjectnn":
        if variant is None:
            raise TrainError(f"scanobjectnn needs a variant: one of {', '.join(SCANOBJECTNN_VARIANTS)}")
        return read_scanobjectnn(root, variant, split, num_points=num_points, sampling=sampling or "first")
    if variant is not None:
        raise TrainError(f"variant {variant!r} applies only to scanobjectnn, not {key}")
    if key in ("modelnet40", "modelnet10"):
        return read_modelnet(root, split, int(key[8:]), num_points=num_points, sampling=sampling, progress=progress)
    if key == "shapenetpart":
        return read_shapenetpart(root, split, num_points=2048 if num_points is None else num_points, seed=seed)
    return read_cma(root, split, num_points=1024 if num_points is None else num_points, seed=seed)
