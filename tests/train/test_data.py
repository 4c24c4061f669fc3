"""pcssl_train.data: sample kinds, selection, errors, determinism, camera-consistent augmentation,
the direct shard reader, DataLoader workers (fork and spawn)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import zarr

from conftest import index_rows
from cma_builder.format import DatasetReader, ShardArray, ZarrArray
from cma_builder.geometry.cameras import project
from pcssl_train.data import Augment, CmaDataset, sample_indices
from pcssl_train.data import transforms as T
from pcssl_train.errors import TrainError

AUG = Augment(rotate_deg=180, flip=0.5)  # scale U(2/3, 3/2) + translate 0.2 by default


def stored(ds: CmaDataset, i: int, name: str) -> np.ndarray:
    obj = ds.objects[i]
    return zarr.open_group(ds.root / "shards" / obj.shard, mode="r")[name][obj.row]


def project_vu(points: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Pixel (v, u) of world points."""
    return project(points, K, w2c)[0]


def shapes(sample: dict) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in sample.items()}


def test_kinds_shapes_and_dtypes(rendered):
    f32, i64 = torch.float32, torch.int64
    s = CmaDataset(rendered, kind="fused", split="all", num_points=512)[0]
    assert shapes(s) == {"points": ((512, 3), f32), "label": ((), i64), "index": ((), i64)}
    s = CmaDataset(rendered, kind="view", split="all", num_points=200, with_fused=True)[1]
    assert shapes(s) == {"points": ((200, 3), f32), "pixels": ((200, 2), i64), "fused": ((200, 3), f32),
                         "rgb": ((3, 64, 64), f32), "K": ((3, 3), f32), "world_to_cam": ((4, 4), f32),
                         "view": ((), i64), "label": ((), i64), "index": ((), i64)}
    assert 0 <= s["rgb"].min() and s["rgb"].max() <= 1 and s["index"] == 1
    s = CmaDataset(rendered, kind="multiview", split="all", views=2, num_view_points=100)[2]
    assert shapes(s) == {"points": ((1024, 3), f32), "rgb": ((2, 3, 64, 64), f32), "K": ((2, 3, 3), f32),
                         "world_to_cam": ((2, 4, 4), f32), "view_points": ((2, 100, 3), f32),
                         "view_pixels": ((2, 100, 2), i64), "views": ((2,), i64), "label": ((), i64),
                         "index": ((), i64)}
    s = CmaDataset(rendered, kind="multiview", split="all", image=False)[0]
    assert "rgb" not in s and s["views"].tolist() == [0, 1, 2, 3]


def test_labels_splits_categories(rendered):
    rows = [r for r in index_rows(rendered) if r["status"] == "done"]
    ds = CmaDataset(rendered, split="all")
    assert len(ds) == 8 and ds.num_classes == 55 and ds.label_names[0] == "02691156"
    assert [o.model_id for o in ds.objects] == [r["model_id"] for r in rows]
    assert [int(ds[i]["label"]) for i in range(8)] == [int(r["label"]) for r in rows]
    assert [ds.label_names[int(ds[i]["label"])] for i in range(8)] == [r["synset_id"] for r in rows]
    by_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    for split, n in by_split.items():
        if n:
            assert len(CmaDataset(rendered, split=split)) == n
    assert len(CmaDataset(rendered, split=["train", "val", "test"])) == 8
    synset, name = rows[0]["synset_id"], rows[0]["category"]
    for cats in ([synset], [name], name):
        sel = CmaDataset(rendered, split="all", categories=cats)
        assert {o.synset_id for o in sel.objects} == {synset}


def test_errors_are_one_line_train_errors(rendered, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    absent = next(s for s in CmaDataset(rendered, split="all").label_names
                  if s not in {r["synset_id"] for r in index_rows(rendered)})
    cases = [
        dict(root=tmp_path / "missing"), dict(root=tmp_path / "other"), dict(root=rendered, kind="voxels"),
        dict(root=rendered, split="training"), dict(root=rendered, sampling="poisson"),
        dict(root=rendered, categories=["not-a-category"]), dict(root=rendered, split="all", categories=[absent]),
        dict(root=rendered, view_choice="best"),
    ]
    for kwargs in cases:
        with pytest.raises(TrainError) as err:
            CmaDataset(**kwargs)
        assert "\n" not in str(err.value), kwargs
    broken = tmp_path / "broken"
    shutil.copytree(rendered, broken)
    shard = CmaDataset(broken, split="all").objects[0].shard
    shutil.rmtree(broken / "shards" / shard / "view_pixels")
    for kind in ("fused", "view", "multiview"):  # a shard that lost an array is damaged, whatever a kind reads
        with pytest.raises(TrainError, match=f"{shard}: array view_pixels is missing; the dataset is damaged"):
            CmaDataset(broken, kind=kind, split="all")
    assert not any("normal" in CmaDataset.required_arrays(k) for k in ("fused", "view", "multiview"))
    assert "rgb" not in CmaDataset.required_arrays("view", image=False)


def test_view_choice(rendered):
    ds = CmaDataset(rendered, kind="view", split="all", view_choice="most_points")
    for i in range(len(ds)):
        assert int(ds[i]["view"]) == int(np.argmax(stored(ds, i, "view_foreground")))
    assert int(CmaDataset(rendered, kind="view", split="all", view_choice=2)[0]["view"]) == 2
    mv = CmaDataset(rendered, kind="multiview", split="all", views=3, view_choice=3)
    assert mv[0]["views"].tolist() == [0, 1, 3]
    rnd = CmaDataset(rendered, kind="view", split="all")
    assert len({int(rnd[(e, 0)]["view"]) for e in range(12)}) > 1
    alias = CmaDataset(rendered, kind="view", split="all", view_choice="max-points")   # the config spelling
    assert [int(alias[i]["view"]) for i in range(len(ds))] == [int(ds[i]["view"]) for i in range(len(ds))]


def test_multiview_without_view_clouds(rendered):
    assert "view_points" not in CmaDataset.required_arrays("multiview", view_points=False)
    full = CmaDataset(rendered, kind="multiview", split="all", views=2, seed=1)
    lean = CmaDataset(rendered, kind="multiview", split="all", views=2, seed=1, view_points=False)
    a, b = full[0], lean[0]
    assert "view_points" not in b and "view_pixels" not in b
    for key in ("rgb", "K", "views"):
        assert torch.equal(a[key], b[key]), key


def test_determinism_and_epochs(rendered):
    kw = dict(kind="view", split="all", augment=Augment(rotate_deg=180, flip=0.5, jitter_sigma=0.01, brightness=0.3,
                                                        contrast=0.3, saturation=0.3), seed=3)
    a, b = CmaDataset(rendered, **kw), CmaDataset(rendered, **kw)
    b.set_epoch(2)
    for i in range(len(a)):
        x, y = a[(2, i)], b[i]
        assert all(torch.equal(x[k], y[k]) for k in x)
    a.set_epoch(3)
    assert not torch.equal(a[0]["points"], b[0]["points"])
    assert not torch.equal(CmaDataset(rendered, **dict(kw, seed=4))[(2, 0)]["points"], b[0]["points"])
    with pytest.raises(IndexError):
        a[len(a)]


def test_sampling_modes(rendered):
    ds = CmaDataset(rendered, split="all", sampling="first", normalize=False, num_points=300)
    n = int(stored(ds, 0, "fused_point_count"))
    assert np.array_equal(ds[0]["points"].numpy(), stored(ds, 0, "fused_points")[:300])
    fps = CmaDataset(rendered, split="all", sampling="fps", normalize=False, num_points=300)
    assert torch.equal(fps[(0, 0)]["points"], fps[(5, 0)]["points"])  # deterministic
    assert len(np.unique(fps[0]["points"].numpy(), axis=0)) == 300
    rnd = CmaDataset(rendered, split="all", normalize=False, num_points=n)
    assert len(np.unique(rnd[0]["points"].numpy(), axis=0)) == n  # without replacement: every distinct point
    rng = np.random.default_rng(0)
    assert sorted(set(sample_indices(5, 12, "random", rng, np.zeros((5, 3))))) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 4, "fps", rng, np.zeros((0, 3))).tolist() == [0, 0, 0, 0]


def test_normalization(rendered):
    for kind in ("fused", "multiview"):
        ds = CmaDataset(rendered, kind=kind, split="all")
        for i in range(len(ds)):
            p = ds[i]["points"].double()
            assert p.mean(0).abs().max() < 1e-5
            assert abs(p.norm(dim=1).max() - 1) < 1e-5
    p = CmaDataset(rendered, kind="view", split="all")[0]["points"].double()  # view cloud: its own stats
    assert p.mean(0).abs().max() < 1e-5 and abs(p.norm(dim=1).max() - 1) < 1e-5


def assert_cameras(points, pixels, K, w2c):
    points, pixels, K, w2c = (x.double().numpy() for x in (points, pixels, K, w2c))
    R = w2c[:3, :3]
    assert np.abs(R @ R.T - np.eye(3)).max() < 1e-5 and abs(np.linalg.det(R) - 1) < 1e-5
    assert np.array_equal(w2c[3], [0, 0, 0, 1])
    assert np.abs(project_vu(points, K, w2c) - pixels).max() < 1e-3


def test_augmented_views_stay_consistent(rendered):
    """Normalized + rotated + scaled + translated (+ flipped) points project onto their pixels."""
    ds = CmaDataset(rendered, kind="view", split="all", augment=AUG, with_fused=True)
    flipped = 0
    for epoch in range(4):
        for i in range(len(ds)):
            s = ds[(epoch, i)]
            assert_cameras(s["points"], s["pixels"], s["K"], s["world_to_cam"])
            v = int(s["view"])
            img = np.moveaxis(stored(ds, i, "rgb")[v], -1, 0).astype(np.float32) / 255
            same, mirrored = np.allclose(s["rgb"].numpy(), img), np.allclose(s["rgb"].numpy(), img[:, :, ::-1])
            assert same or mirrored
            flipped += not same
            source = {tuple(p) for p in stored(ds, i, "view_pixels")[v]}  # where each point was rendered
            pv, pu = s["pixels"].numpy().T
            plain, flip = ({(a, b) for a, b in zip(pv, u)} <= source for u in (pu, 63 - pu))
            assert flip if not same else plain or (mirrored and flip)
    assert 0 < flipped < 32
    mv = CmaDataset(rendered, kind="multiview", split="all", augment=AUG)
    for i in range(len(mv)):
        s = mv[(1, i)]
        for k in range(len(s["views"])):
            assert_cameras(s["view_points"][k], s["view_pixels"][k], s["K"][k], s["world_to_cam"][k])


def test_transforms():
    rng = np.random.default_rng(0)
    A, t = T.random_similarity(Augment(rotate_deg=180), rng, cameras=True)
    s, R = T.split_similarity(A)
    assert 2 / 3 <= s <= 1.5 and np.allclose(R @ R.T, np.eye(3)) and np.allclose(R[1], [0, 1, 0])
    A2, _ = T.random_similarity(Augment(), rng, cameras=False)
    assert len(set(np.round(np.diag(A2), 9))) == 3  # per-axis scale without cameras
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = T.rotation_y(0.3), [0.1, -0.2, 2.5]
    K = np.array([[80.0, 0, 31.5], [0, 80.0, 31.5], [0, 0, 1]])
    X = rng.uniform(-0.3, 0.3, (50, 3))
    px = project_vu(X, K, w2c)
    assert np.allclose(project_vu(T.transform_points(X, A, t).astype(np.float64), K, T.transform_cameras(w2c, A, t)),
                       px, atol=1e-3)
    H, b = T.flip_reflection(w2c)
    assert np.isclose(np.linalg.det(H), -1)
    _, pix, _, K2, _ = T.flip_view(X, np.round(px).astype(np.int64), None, K, w2c, 64)
    assert np.allclose(project_vu(X @ H.T + b, K2, w2c)[:, 1], 63 - px[:, 1])
    img = rng.uniform(0, 1, (3, 8, 8)).astype(np.float32)
    out = T.color_jitter(img, rng, 0.5, 0.5, 0.5)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1 and not np.allclose(out, img)


def test_shard_reader_matches_zarr(rendered):
    ds = CmaDataset(rendered, split="all")
    folder = ds.root / "shards" / ds.objects[0].shard
    group = zarr.open_group(folder, mode="r")
    for name in group.array_keys():
        arr = ShardArray.open(folder / name)
        if name in ("model_id", "synset_id"):
            assert arr is None  # strings: read through zarr
            continue
        full = group[name][:]
        assert np.array_equal(arr.read_all(), full), name
        if full.ndim > 1 and name in ("rgb", "view_points", "K"):
            assert np.array_equal(arr.read(1, 2), full[1, 2]), name


def test_reader_falls_back_to_zarr_for_other_layouts(rendered, tmp_path):
    """Arrays rewritten in another zarr layout (plain chunks, no sharding codec) read the same,
    through zarr, and give the same samples."""
    ds = tmp_path / "ds"
    shutil.copytree(rendered, ds)
    shard = index_rows(ds)[0]["shard"]
    group = zarr.open_group(ds / "shards" / shard, mode="r+", use_consolidated=False)
    values = {name: group[name][:] for name in ("rgb", "view_points", "view_point_count", "fused_points")}
    for name, data in values.items():
        del group[name]
        group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(1,) + data.shape[1:])[:] = data
    reader = DatasetReader.open(ds)
    obj = next(o for o in reader.objects() if o.shard == shard)
    assert isinstance(reader.array(shard, "rgb"), ZarrArray)
    assert isinstance(reader.array(shard, "K"), ShardArray)
    for name, data in values.items():
        np.testing.assert_array_equal(reader.read_shard(shard, name), data)
        np.testing.assert_array_equal(reader.read(obj, name), data[obj.row])
    np.testing.assert_array_equal(reader.read(obj, "rgb", view=1), values["rgb"][obj.row, 1])
    fast, plain = (CmaDataset(d, kind="multiview", split="all", views=2, augment=AUG) for d in (rendered, ds))
    for i in range(len(fast)):
        a, b = fast[i], plain[i]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), i


def batches(ds, **kw):
    loader = torch.utils.data.DataLoader(ds, batch_size=3, **kw)
    return list(loader)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_match(rendered, context):
    ds = CmaDataset(rendered, kind="view", split="all", augment=AUG, with_fused=True)
    ds.set_epoch(1)
    ds[0]  # a warm cache in the parent must not leak into forked workers
    ref = batches(ds)
    got = batches(ds, num_workers=2, multiprocessing_context=context)
    assert len(ref) == len(got) == 3
    for a, b in zip(ref, got):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
