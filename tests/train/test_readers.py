"""pcssl_train.eval.readers: tiny ModelNet40 / ScanObjectNN / ShapeNetPart files in the official layouts,
the cma reader on a real render, dispatch, and one-line TrainErrors."""

from __future__ import annotations

import json
import zlib

import h5py
import numpy as np
import pytest

from conftest import index_rows, load
from cma_builder.geometry.fps import farthest_point_sample
from pcssl_train.errors import TrainError
from pcssl_train.eval.readers import (BENCHMARKS, SCANOBJECTNN_CLASSES, load_benchmark, read_cma, read_modelnet40,
                                      read_scanobjectnn, read_shapenetpart)

MN_NAMES = [f"class{i:02d}" for i in range(40)]


def write_h5(path, data, label, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if data is not None:
            f["data"] = data
        if label is not None:
            f["label"] = label
        for k, v in extra.items():
            f[k] = v


def clouds(rng, n, p=2048):
    return rng.standard_normal((n, p, 3)).astype(np.float32)


def raises(fn, *args, match: str, **kwargs) -> str:
    """Call, expect a one-line TrainError containing every '|'-separated part of ``match``."""
    with pytest.raises(TrainError) as err:
        fn(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in match.split("|"):
        assert part in msg, msg
    return msg


# --- ModelNet40 -------------------------------------------------------------------------------
@pytest.fixture
def modelnet(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    rng = np.random.default_rng(1)
    files = {"ply_data_train0.h5": 3, "ply_data_train1.h5": 2, "ply_data_test0.h5": 4}
    truth = {}
    for name, n in files.items():
        data, label = clouds(rng, n), rng.integers(0, 40, (n, 1)).astype(np.uint8)
        write_h5(root / name, data, label, normal=clouds(rng, n), faceId=np.zeros((n, 2048), np.int32))
        truth[name] = (data, label)
    prefix = "data/modelnet40_ply_hdf5_2048/"
    (root / "train_files.txt").write_text(f"{prefix}ply_data_train0.h5\n{prefix}ply_data_train1.h5\n")
    (root / "test_files.txt").write_text(f"{prefix}ply_data_test0.h5\n")
    (root / "shape_names.txt").write_text("\n".join(MN_NAMES) + "\n")
    return root, truth


def test_modelnet40(modelnet):
    root, truth = modelnet
    train = read_modelnet40(root, "train")
    (d0, l0), (d1, l1) = truth["ply_data_train0.h5"], truth["ply_data_train1.h5"]
    assert np.array_equal(train.points, np.concatenate([d0, d1])) and train.points.dtype == np.float32
    assert train.labels.tolist() == np.concatenate([l0, l1]).ravel().tolist() and train.labels.dtype == np.int64
    assert train.class_names == MN_NAMES and train.name == "modelnet40/train"
    assert train.ids == [f"ply_data_train0.h5:{i}" for i in range(3)] + [f"ply_data_train1.h5:{i}" for i in range(2)]
    test = read_modelnet40(root, "test")
    assert np.array_equal(test.points, truth["ply_data_test0.h5"][0]) and len(test) == 4
    assert test.ids[-1] == "ply_data_test0.h5:3" and test.name == "modelnet40/test"
    short = load_benchmark("modelnet40", root, "test", num_points=1024)
    assert np.array_equal(short.points, truth["ply_data_test0.h5"][0][:, :1024])
    (root / "shape_names.txt").unlink()
    assert read_modelnet40(root, "test").class_names == [str(i) for i in range(40)]


def test_modelnet40_errors(modelnet, tmp_path):
    root, _ = modelnet
    raises(read_modelnet40, tmp_path / "absent", "train", match="absent|no such folder")
    raises(read_modelnet40, root, "val", match="unknown ModelNet40 split 'val'|train, test")
    raises(load_benchmark, "modelnet40", root, "test", num_points=4096, match="num_points")
    (root / "ply_data_train1.h5").unlink()
    raises(read_modelnet40, root, "train", match="missing ply_data_train1.h5|train_files.txt|official")
    (root / "test_files.txt").unlink()
    raises(read_modelnet40, root, "test", match="missing test_files.txt|official modelnet40_ply_hdf5_2048")
    write_h5(root / "ply_data_train1.h5", clouds(np.random.default_rng(0), 2), None)
    raises(read_modelnet40, root, "train", match="ply_data_train1.h5|no 'label'")
    write_h5(root / "ply_data_train1.h5", np.zeros((2, 2048, 6), np.float32), np.zeros((2, 1), np.uint8))
    raises(read_modelnet40, root, "train", match="ply_data_train1.h5|(N, P, 3)|(2, 2048, 6)")
    (root / "ply_data_train1.h5").write_bytes(b"not hdf5")
    raises(read_modelnet40, root, "train", match="ply_data_train1.h5|not a readable HDF5 file")


# --- ScanObjectNN -----------------------------------------------------------------------------
SON_FILES = {
    "obj_bg": "main_split/{}_objectdataset.h5",
    "obj_only": "main_split_nobg/{}_objectdataset.h5",
    "pb_t50_rs": "main_split/{}_objectdataset_augmentedrot_scale75.h5",
}


@pytest.fixture
def scanobjectnn(tmp_path):
    root = tmp_path / "h5_files"
    rng = np.random.default_rng(2)
    truth = {}
    for k, (variant, pattern) in enumerate(SON_FILES.items()):
        for split, prefix in (("train", "training"), ("test", "test")):
            n = 2 + k + (split == "test")
            data = clouds(rng, n)
            label = rng.integers(0, 15, n)
            label = label.reshape(-1, 1) if variant == "obj_only" else label  # (N, 1) and (N,) both occur
            write_h5(root / pattern.format(prefix), data, label.astype(np.int64 if k else np.uint8),
                     mask=np.zeros((n, 2048), np.int64))
            truth[variant, split] = (data, label.ravel())
    return root, truth


def test_scanobjectnn_variants(scanobjectnn):
    root, truth = scanobjectnn
    for variant in SON_FILES:
        for split in ("train", "test"):
            ps = read_scanobjectnn(root, variant, split)
            data, label = truth[variant, split]
            assert np.array_equal(ps.points, data) and ps.labels.tolist() == label.tolist(), (variant, split)
            assert ps.class_names == SCANOBJECTNN_CLASSES and ps.name == f"scanobjectnn-{variant}/{split}"
            assert ps.ids[0].endswith(".h5:0") and len(ps.ids) == len(data)
    for alias, variant in (("OBJ-BG", "obj_bg"), ("obj-only", "obj_only"), ("PB-T50-RS", "pb_t50_rs")):
        ps = load_benchmark("scanobjectnn", root, "test", variant=alias)
        assert np.array_equal(ps.points, truth[variant, "test"][0]) and ps.name == f"scanobjectnn-{variant}/test"
    ps = load_benchmark("ScanObjectNN", root, "train", variant="pb_t50_rs", num_points=512)
    assert np.array_equal(ps.points, truth["pb_t50_rs", "train"][0][:, :512])
    # root = the split folder itself (or its sibling for the other variant)
    assert np.array_equal(read_scanobjectnn(root / "main_split_nobg", "obj_only", "train").points,
                          truth["obj_only", "train"][0])
    assert np.array_equal(read_scanobjectnn(root / "main_split", "pb_t50_rs", "test").points,
                          truth["pb_t50_rs", "test"][0])
    assert np.array_equal(read_scanobjectnn(root / "main_split_nobg", "obj_bg", "test").points,
                          truth["obj_bg", "test"][0])


def test_scanobjectnn_h5_directly_in_root(tmp_path):
    data = clouds(np.random.default_rng(3), 2)
    write_h5(tmp_path / "test_objectdataset_augmentedrot_scale75.h5", data, np.array([[3], [14]]))
    ps = read_scanobjectnn(tmp_path, "PB-T50-RS", "test")
    assert np.array_equal(ps.points, data) and ps.labels.tolist() == [3, 14]


def test_scanobjectnn_errors(scanobjectnn, tmp_path):
    root, _ = scanobjectnn
    raises(read_scanobjectnn, tmp_path / "nope", "obj_bg", "train", match="nope|no such folder")
    raises(read_scanobjectnn, root, "hardest", "train", match="unknown ScanObjectNN variant 'hardest'|pb_t50_rs")
    raises(read_scanobjectnn, root, "obj_bg", "val", match="unknown ScanObjectNN split 'val'")
    raises(load_benchmark, "scanobjectnn", root, "train", match="needs a variant")
    (root / "main_split_nobg" / "test_objectdataset.h5").unlink()
    raises(read_scanobjectnn, root, "obj_only", "test", match="missing main_split_nobg/test_objectdataset.h5|official")
    write_h5(root / "main_split" / "test_objectdataset.h5", None, np.zeros(2), mask=np.zeros(2))
    raises(read_scanobjectnn, root, "obj_bg", "test", match="test_objectdataset.h5|no 'data'|label, mask")
    write_h5(root / "main_split" / "test_objectdataset.h5", clouds(np.random.default_rng(0), 2), np.array([0, 15]))
    raises(read_scanobjectnn, root, "obj_bg", "test", match="labels must be 0..14")
    write_h5(root / "main_split" / "test_objectdataset.h5", clouds(np.random.default_rng(0), 2), np.zeros(3))
    raises(read_scanobjectnn, root, "obj_bg", "test", match="one integer label per cloud (2)")
    write_h5(root / "main_split" / "test_objectdataset.h5", np.zeros((2, 2048), np.float32), np.zeros(2))
    raises(read_scanobjectnn, root, "obj_bg", "test", match="(N, P, 3)")


# --- ShapeNetPart -----------------------------------------------------------------------------
CATS = [("Airplane", "02691156"), ("Mug", "03797390"), ("Widget", "09999999")]
PARTS = {"02691156": [0, 1, 2, 3], "03797390": [36, 37], "09999999": [60, 62]}


def part_of(xyz: np.ndarray, synset: str) -> np.ndarray:
    """The part label of a point: a function of its coordinates."""
    parts = PARTS[synset]
    return np.array(parts)[(np.floor(xyz[:, 0] * 1000).astype(np.int64)) % len(parts)]


@pytest.fixture
def shapenetpart(tmp_path):
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    rng = np.random.default_rng(4)
    (root / "train_test_split").mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text("".join(f"{n}\t{s}\n" for n, s in CATS))
    sizes = {"train": [50, 7, 31, 64], "val": [12, 40], "test": [20, 3, 90]}
    lists, rows = {}, {}
    k = 0
    for split, ns in sizes.items():
        lists[split] = []
        for n in ns:
            synset = CATS[k % 3][1]
            model = f"{k:04d}abcdef"
            xyz = np.round(rng.uniform(-1, 1, (n, 3)), 6)
            normals = np.round(rng.uniform(-1, 1, (n, 3)), 6)
            table = np.column_stack([xyz, normals, part_of(xyz, synset)])
            (root / synset).mkdir(exist_ok=True)
            np.savetxt(root / synset / f"{model}.txt", table, fmt="%.6f")
            lists[split].append(f"shape_data/{synset}/{model}")
            rows[f"{synset}/{model}"] = table
            k += 1
        lists[split].append("shape_data/04379243/notpresent")  # a category not in synsetoffset2category.txt
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(lists[split]))
    return root, lists, rows


def test_shapenetpart(shapenetpart):
    root, lists, rows = shapenetpart
    ps = read_shapenetpart(root, "train", num_points=32, seed=5)
    expected_ids = [s.split("/", 1)[1] for s in lists["train"][:-1]]
    assert ps.ids == expected_ids and ps.name == "shapenetpart/train"
    assert ps.class_names == ["Airplane", "Mug", "Widget"]
    assert ps.labels.tolist() == [[s for _, s in CATS].index(i.split("/")[0]) for i in expected_ids]
    assert ps.parts_of_class == [[0, 1, 2, 3], [36, 37], [60, 62]] and ps.num_parts == 63
    assert ps.points.shape == (4, 32, 3) and ps.seg.shape == (4, 32) and ps.seg.dtype == np.int64
    for i, sample_id in enumerate(ps.ids):
        table = rows[sample_id]
        n = len(table)
        idx = np.random.default_rng([5, zlib.crc32(sample_id.encode())]).choice(n, 32, replace=n < 32)
        assert np.array_equal(ps.points[i], table[idx, :3].astype(np.float32))
        assert np.array_equal(ps.seg[i], part_of(ps.points[i].astype(np.float64), sample_id.split("/")[0]))
        assert np.array_equal(ps.seg[i], table[idx, 6].astype(np.int64))
        unique = len(np.unique(ps.points[i], axis=0))
        assert unique == 32 if n >= 32 else unique <= n, (sample_id, n)  # no repeats unless too few rows
    again = read_shapenetpart(root, "train", num_points=32, seed=5)
    assert np.array_equal(again.points, ps.points) and np.array_equal(again.seg, ps.seg)
    other = read_shapenetpart(root, "train", num_points=32, seed=6)
    assert not np.array_equal(other.points, ps.points)
    trainval = load_benchmark("shapenetpart", root, "trainval", num_points=32, seed=5)
    assert trainval.ids == expected_ids + [s.split("/", 1)[1] for s in lists["val"][:-1]]
    assert np.array_equal(trainval.points[:4], ps.points) and trainval.name == "shapenetpart/trainval"
    test = load_benchmark("shapenetpart", root, "test")
    assert test.points.shape == (3, 2048, 3) and len(read_shapenetpart(root, "val", num_points=8)) == 2


def test_shapenetpart_errors(shapenetpart, tmp_path):
    root, lists, _ = shapenetpart
    raises(read_shapenetpart, tmp_path / "gone", "train", match="gone|no such folder")
    raises(read_shapenetpart, root, "all", match="unknown ShapeNetPart split 'all'|trainval")
    synset, model = lists["test"][0].split("/")[1:]
    path = root / synset / f"{model}.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4] + [" ".join(lines[4].split()[:6])] + lines[5:]) + "\n")
    raises(read_shapenetpart, root, "test", match=f"{model}.txt|line 5|expected 7 columns|got 6")
    path.write_text("\n".join(" ".join(line.split()[:6]) for line in lines) + "\n")
    raises(read_shapenetpart, root, "test", match=f"{model}.txt|line 1|got 6")
    path.write_text(lines[0] + "\n" + lines[1].replace(lines[1].split()[2], "abc") + "\n")
    raises(read_shapenetpart, root, "test", match=f"{model}.txt|line 2|not numbers")
    path.write_text("0 0 0 0 0 1 7\n")
    raises(read_shapenetpart, root, "test", match=f"{model}.txt|part label 7|0..3 for Airplane")
    path.unlink()
    raises(read_shapenetpart, root, "test", match=f"missing {synset}/{model}.txt|official")
    (root / "train_test_split" / "shuffled_val_file_list.json").unlink()
    raises(read_shapenetpart, root, "trainval", match="missing train_test_split/shuffled_val_file_list.json")
    (root / "synsetoffset2category.txt").unlink()
    raises(read_shapenetpart, root, "train", match="missing synsetoffset2category.txt|official")


# --- cma --------------------------------------------------------------------------------------
def test_read_cma(rendered):
    rows = [r for r in index_rows(rendered) if r["status"] == "done"]
    ps = read_cma(rendered, "all", num_points=256)
    assert ps.name == "cma/all" and ps.points.shape == (len(rows), 256, 3)
    assert ps.labels.tolist() == [int(r["label"]) for r in rows]
    assert ps.ids == [f"{r['synset_id']}/{r['model_id']}" for r in rows]
    assert [ps.class_names[c] for c in ps.labels] == [r["category"] for r in rows]
    for i, row in enumerate(rows):
        arrays = load(rendered, row)
        pts = arrays["fused_points"][: int(arrays["fused_point_count"])]
        assert np.array_equal(ps.points[i], pts[farthest_point_sample(pts[None].astype(np.float64), 256)[0]])
    for split in ("train", "val", "test"):
        sel = [r for r in rows if r["split"] == split]
        if sel:
            part = load_benchmark("cma", rendered, split, num_points=64)
            assert part.name == f"cma/{split}" and part.points.shape == (len(sel), 64, 3)
            assert part.labels.tolist() == [int(r["label"]) for r in sel]
            assert part.ids == [f"{r['synset_id']}/{r['model_id']}" for r in sel]
    raises(read_cma, rendered, "training", match="unknown cma split 'training'")
    raises(read_cma, rendered.parent / "missing", "all", match="missing")


def test_load_benchmark_names(tmp_path):
    assert BENCHMARKS == ("modelnet40", "modelnet10", "scanobjectnn", "shapenetpart", "cma")
    raises(load_benchmark, "modelnet30", tmp_path, "train", match="unknown benchmark 'modelnet30'|"
           "modelnet40, modelnet10, scanobjectnn, shapenetpart, cma")
    raises(load_benchmark, "cma", tmp_path, "train", sampling="fps", match="--sampling applies to")
    raises(load_benchmark, "modelnet40", tmp_path, "train", variant="obj_bg", match="only to scanobjectnn")
