"""Evaluation protocols: linear SVM, few-shot, feature extraction, classification fine-tuning,
``pcssl-train eval`` and ``pcssl-train benchmark`` on real rendered data and real runs."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
import torch

from conftest import SMALL, run_cli, synthesize
from pcssl_train.engine.config import load_config
from pcssl_train.engine.trainer import pretrain
from pcssl_train.errors import TrainError
from pcssl_train.eval.benchmark import (_view_counts, fewshot_support, markdown, plot, run_benchmark, split_counts,
                                        view_clouds)
from pcssl_train.eval.features import EncoderSpec, extract_features, load_spec, pooled
from pcssl_train.eval.fewshot import episodes, few_shot
from pcssl_train.eval.finetune import FinetuneConfig, classifier, finetune_classifier, warmup_steps
from pcssl_train.eval.pointset import PointSet
from pcssl_train.eval.svm import linear_svm, stratified_holdout

@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is as fast, and far faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(num_group=8, group_size=16, width=32, depth=2, num_heads=4, drop_path=0.0)


def save_tiny_encoder(path, **extra) -> None:
    """A seeded tiny point-transformer encoder in this package's export format."""
    enc = EncoderSpec("point_transformer", TINY, None).build(seed=0)
    torch.save({"format": "pcssl-encoder/1", "model": "point_transformer", "config": TINY,
                "state_dict": enc.state_dict(), **extra}, path)


def blobs(n_per_class, classes, dim=16, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), n_per_class)
    return centers[y] + spread * rng.normal(size=(len(y), dim)), y


def shapes(n_per_class, points=128, seed=0):
    """Two classes of clouds: points on a sphere, points on a cube's surface (random sizes)."""
    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    for i in range(2 * n_per_class):
        c = i % 2
        x = rng.normal(size=(points, 3))
        x = x / np.linalg.norm(x, axis=1, keepdims=True) if c == 0 else x / np.abs(x).max(axis=1, keepdims=True)
        clouds.append(x * rng.uniform(0.5, 2) + rng.uniform(-1, 1, 3))
        labels.append(c)
    return PointSet(np.stack(clouds), np.array(labels), ["sphere", "cube"])


# --- linear SVM -------------------------------------------------------------------------------
def test_svm_separable_blobs_and_c_never_sees_test():
    x, y = blobs(30, 4)
    rng = np.random.default_rng(5)
    xt = x[::3] + 0.1 * rng.normal(size=x[::3].shape)
    yt = y[::3]
    r = linear_svm(x, y, xt, yt, seed=0)
    assert r["test_accuracy"] == 1.0 and r["val_source"] == "train hold-out"
    # Shuffling the test labels changes the accuracy but never the chosen C.
    r2 = linear_svm(x, y, xt, rng.permutation(yt), seed=0)
    assert r2["C"] == r["C"] and r2["val_scores"] == r["val_scores"] and r2["test_accuracy"] < 1.0


def test_svm_uses_the_val_split_when_given():
    x, y = blobs(20, 3)
    r = linear_svm(x[:45], y[:45], x[45:], y[45:], x[45:], y[45:])
    assert r["val_source"] == "val split" and r["val_size"] == 15 and r["train_size"] == 45


def test_svm_small_val_split_chooses_c_by_cross_validation_on_train():
    x, y = blobs(20, 3)
    train, test = np.arange(60) % 4 != 0, np.arange(60) % 4 == 0
    vx, vy = blobs(1, 3, seed=0)  # 3 val samples: one per class (same centers: seed 0)
    r = linear_svm(x[train], y[train], x[test], y[test], vx, vy, seed=0)
    assert r["val_source"] == "5-fold CV on train (val split has only 3 samples, fewer than 10)", r["val_source"]
    assert r["cv_folds"] == 5 and r["val_size"] == 45 and r["test_accuracy"] == 1.0
    # The val split's labels (and the test labels) never influence C then.
    r2 = linear_svm(x[train], y[train], x[test], y[test][::-1], vx, vy[::-1], seed=0)
    assert r2["C"] == r["C"] and r2["val_scores"] == r["val_scores"]
    # The smallest training class caps k; views of one object (groups) stay in one fold.
    few = np.flatnonzero(train)[[0, 1, 2, 15, 16, 17, 30, 31, 32]]  # 3 per class
    assert linear_svm(x[few], y[few], x[test], y[test], vx, vy)["cv_folds"] == 3
    groups = np.arange(train.sum()) // 3  # 15 "objects" of 3 "views" each, 5 per class
    g = linear_svm(x[train], y[train], x[test], y[test], seed=0, groups=groups)
    assert g["val_source"] == "5-fold CV on train (no val split)" and g["test_accuracy"] == 1.0
    # A val split of max(10, 2 x classes) samples or more is used as it is.
    bx, by = blobs(4, 3, seed=7)
    big = linear_svm(x[train], y[train], x[test], y[test], bx, by, seed=0)
    assert big["val_source"] == "val split" and big["val_size"] == 12 and "cv_folds" not in big
    # No val split and a small training set: the 20 % hold-out would be too small, so CV too.
    small = linear_svm(x[few], y[few], x[test], y[test])
    assert small["val_source"].startswith("3-fold CV on train (a 20 % hold-out of train would have only 3 samples")


def test_stratified_holdout_keeps_every_class():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    fit, hold = stratified_holdout(y, 0.2, 0)
    assert sorted(np.concatenate([fit, hold]).tolist()) == list(range(16))
    assert set(y[fit]) == {0, 1, 2} and (y[hold] == 0).sum() == 2 and (y[hold] == 1).sum() == 1


# --- few-shot ---------------------------------------------------------------------------------
def test_fewshot_episodes_are_seeded_and_disjoint():
    y_train, y_test = np.repeat(np.arange(12), 25), np.repeat(np.arange(12), 30)
    a = episodes(y_train, y_test, 5, 10, 10, 20, seed=3)
    b = episodes(y_train, y_test, 5, 10, 10, 20, seed=3)
    assert all((s1 == s2).all() and (q1 == q2).all() for (s1, q1), (s2, q2) in zip(a, b))
    for sup, qry in a:
        classes = set(y_train[sup])
        assert len(classes) == 5 and len(sup) == 50 and len(set(sup)) == 50
        assert set(y_test[qry]) == classes and len(qry) == 100
    assert len({tuple(sorted(set(y_train[s]))) for s, _ in a}) > 1  # trials draw different classes


def test_fewshot_accuracy_tracks_the_features():
    x, y = blobs(40, 10)
    good = few_shot(x[::2], y[::2], x[1::2], y[1::2], ways=5, shots=10, trials=10)
    assert good["mean"] == 1.0 and good["std"] == 0.0 and good["min_queries_per_class"] == 20
    noise = np.random.default_rng(0).normal(size=x.shape)
    bad = few_shot(noise[::2], y[::2], noise[1::2], y[1::2], ways=5, shots=10, trials=10)
    assert bad["mean"] < 0.45  # chance is 0.2


def test_fewshot_too_few_classes_is_one_line():
    with pytest.raises(TrainError, match="10-way 10-shot needs 10 classes"):
        few_shot(*blobs(12, 3), *blobs(5, 3), ways=10, shots=10)


# --- features ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, config, dim", [
    ("point_transformer", TINY, 64),
    ("point_transformer", dict(TINY, cls_token=True), 64),
    ("pointnet_encoder", {}, 2048),
    ("dgcnn_encoder", dict(k=8, emb_dims=32), 64),
])
def test_pooled_features_are_max_and_mean(name, config, dim):
    spec = EncoderSpec(name, config, None)
    enc = spec.build(seed=0)
    pts = np.random.default_rng(0).normal(size=(3, 128, 3)).astype(np.float32)
    f = extract_features(enc, pts, batch_size=2)
    assert f.shape == (3, dim) and np.isfinite(f).all()
    # Each cloud is normalized first: a moved and scaled copy gives the same features.
    g = extract_features(enc, pts * 3.5 + np.float32([1, -2, 0.5]), batch_size=3)
    np.testing.assert_allclose(f, g, atol=1e-4)
    if name == "point_transformer":
        from cma_builder.geometry.normalize import normalize_clouds

        x = torch.from_numpy(normalize_clouds(pts))
        with torch.no_grad():
            tokens = enc.forward_points(x)[:, 1 if config.get("cls_token") else 0:]
            np.testing.assert_allclose(pooled(enc, x).numpy()[:, :32], tokens.amax(1).numpy(), atol=1e-6)


def test_random_init_is_seeded_and_differs_from_pretrained(rendered, tmp_path):
    cfg = load_config("point-mae", "point-mae-tiny", ("optim.epochs=1", "train.tensorboard=false"))
    pretrain(cfg, rendered, tmp_path / "run", progress=False)
    from_run = load_spec(tmp_path / "run")
    proc = run_cli("pcssl-train", "export", str(tmp_path / "run"), "--out", str(tmp_path / "enc.pt"))
    assert proc.returncode == 0, proc.stderr
    from_export = load_spec(tmp_path / "enc.pt")
    from_ckpt = load_spec(tmp_path / "run" / "checkpoints" / "last.pt")
    a, b, c = (s.build().state_dict() for s in (from_run, from_export, from_ckpt))
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    assert from_run.method == "point-mae" and from_run.epoch == 1
    r1, r2 = from_run.random_init().build(seed=4).state_dict(), from_run.random_init().build(seed=4).state_dict()
    assert all(torch.equal(r1[k], r2[k]) for k in r1)
    assert not torch.equal(r1["transformer.blocks.0.attn.qkv.weight"], a["transformer.blocks.0.attn.qkv.weight"])
    with pytest.raises(TrainError, match="neither a pcssl-train encoder export, a run checkpoint nor an official"):
        torch.save({"x": 1}, tmp_path / "junk.pt")
        load_spec(tmp_path / "junk.pt")


# --- fine-tuning ------------------------------------------------------------------------------
@pytest.mark.slow
def test_finetune_learns():
    """Spheres vs cubes: ~180 steps (BatchNorm's running statistics need about 100 to fit a random-init
    encoder) reach >= 0.9 on 50 test clouds."""
    train, test = shapes(24), shapes(25, seed=1)
    cfg = FinetuneConfig(epochs=30, batch_size=8, warmup_epochs=1, lr=1e-3, votes=3, eval_every=30)
    r = finetune_classifier(EncoderSpec("point_transformer", TINY, None), train, test, cfg=cfg, progress=False)
    assert np.mean([h["loss"] for h in r["history"][-3:]]) < 0.5 * r["history"][0]["loss"], r["history"]
    assert r["test_accuracy"] >= 0.9 and r["test_accuracy_vote"] >= 0.9, r


def test_finetune_reports_vote_and_val_selection():
    train, test, val = shapes(4), shapes(3, seed=1), shapes(3, seed=2)
    cfg = FinetuneConfig(epochs=4, batch_size=4, warmup_epochs=1, lr=1e-3, votes=3, eval_every=2)
    r = finetune_classifier(EncoderSpec("point_transformer", TINY, None), train, test, val, cfg, progress=False)
    assert len(r["history"]) == 4 and all(np.isfinite(h["loss"]) for h in r["history"])
    assert [h["epoch"] for h in r["history"] if "test_accuracy" in h] == [2, 4]
    assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["test_accuracy_vote"] <= 1
    best = max((h for h in r["history"] if "val_accuracy" in h), key=lambda h: h["val_accuracy"])
    assert r["best_val_epoch"] == best["epoch"] and r["test_accuracy_at_best_val"] == best["test_accuracy"]


def test_warmup_scales_with_the_epochs():
    """10 warmup epochs of 300 as published; shorter runs keep the 1/30 share, so they leave the warmup."""
    assert warmup_steps(300, 100) == 1000 and warmup_steps(600, 100) == 1000  # capped at 10 epochs
    assert warmup_steps(30, 100) == 100 and warmup_steps(3, 100) == 10 and warmup_steps(3, 5) == 0
    assert warmup_steps(300, 100, warmup_epochs=1) == 100


def test_cli_finetune_3_epochs_leaves_warmup_and_beats_chance(tmp_path):
    """``eval -p finetune --epochs 3`` on 3 clearly separable classes (spheres, cubes, discs): with a fixed
    10-epoch warmup the run never reached the full learning rate; now it warms up for 0.1 epoch."""
    root = tmp_path / "mn40"
    write_modelnet40(root, per_class=100, test_per_class=8)  # 300 training clouds: 37 steps an epoch
    save_tiny_encoder(tmp_path / "enc.pt")
    proc = run_cli("pcssl-train", "eval", str(tmp_path / "enc.pt"), "-p", "finetune", "-b", "modelnet40", "-r",
                   str(root), "--points", "256", "--epochs", "3", "--batch-size", "8", "--no-progress",
                   "-o", str(tmp_path / "ft.json"))
    assert proc.returncode == 0, proc.stderr
    ft = json.loads((tmp_path / "ft.json").read_text())
    assert ft["epochs"] == 3 and 0 < ft["warmup_epochs"] < 0.2, ft["warmup_epochs"]  # 4 steps of 37
    assert ft["test_accuracy"] > 0.6 and ft["test_accuracy_vote"] > 0.6, ft  # chance: 1/3


@pytest.mark.parametrize("name, config", [("pointnet_encoder", {}), ("dgcnn_encoder", dict(k=8, emb_dims=32))])
def test_finetune_other_encoders(name, config):
    """PointNet (with its feature-transform regularizer) and DGCNN fine-tune through the same loop."""
    cfg = FinetuneConfig(epochs=2, batch_size=8, warmup_epochs=1, votes=2)
    r = finetune_classifier(EncoderSpec(name, config, None), shapes(8), shapes(4, seed=1), cfg=cfg, progress=False)
    assert len(r["history"]) == 2 and all(np.isfinite(h["loss"]) for h in r["history"])
    assert 0 <= r["test_accuracy_vote"] <= 1 and r["test_size"] == 8


def test_classifier_gets_the_pretrained_weights():
    enc = EncoderSpec("point_transformer", TINY, None).build(seed=3)
    spec = EncoderSpec("point_transformer", TINY, enc.state_dict(), "enc.pt")
    model = classifier(spec, 5, drop_path=0.1)
    for k, v in enc.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    bad = EncoderSpec("point_transformer", dict(TINY, width=64, num_heads=4), enc.state_dict(), "enc.pt")
    with pytest.raises((TrainError, RuntimeError)):
        classifier(bad, 5, 0.1)
    dg = EncoderSpec("dgcnn_encoder", dict(k=8, emb_dims=32), None)
    assert classifier(dg, 3, 0.0)(torch.rand(2, 64, 3)).shape == (2, 3)


# --- the CLI ----------------------------------------------------------------------------------
def write_modelnet40(root, per_class=8, classes=3, seed=0, test_per_class=None):
    """A ModelNet40-format folder whose 3 used classes are spheres, cubes and flat discs."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "shape_names.txt").write_text("\n".join(f"class{i}" for i in range(40)) + "\n")
    for split in ("train", "test"):
        clouds, labels = [], []
        for i in range((per_class if split == "train" or test_per_class is None else test_per_class) * classes):
            c = i % classes
            x = rng.normal(size=(2048, 3))
            x = x / np.linalg.norm(x, axis=1, keepdims=True) if c == 0 else \
                x / np.abs(x).max(axis=1, keepdims=True) if c == 1 else x * [1, 0.05, 1]
            clouds.append(x)
            labels.append(c)
        name = f"ply_data_{split}0.h5"
        with h5py.File(root / name, "w") as f:
            f["data"] = np.stack(clouds).astype(np.float32)
            f["label"] = np.array(labels, dtype=np.uint8)[:, None]
        (root / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/{name}\n")


def test_cli_eval_svm_fewshot_finetune_on_modelnet40_files(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    write_modelnet40(root)
    save_tiny_encoder(tmp_path / "enc.pt", method="point-mae", epoch=3)
    common = [str(tmp_path / "enc.pt"), "-b", "modelnet40", "-r", str(root), "--points", "256", "--no-progress"]
    proc = run_cli("pcssl-train", "eval", *common, "-p", "svm", "-o", str(tmp_path / "svm.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "svm.json").read_text())
    # 8 training clouds per class: a 20 % hold-out (6 clouds) is too small to choose C on, so 5-fold CV.
    how = "5-fold CV on train (a 20 % hold-out of train would have only 6 samples, fewer than 10)"
    assert result["test_size"] == 24 and result["val_source"] == how, result
    assert result["test_accuracy"] > 0.6, result  # 3 classes: chance is 1/3
    assert "linear SVM [cv]: test accuracy" in proc.stdout and f"chosen by {how}" in proc.stdout, proc.stdout
    rows = list(csv.DictReader(open(tmp_path / "svm.csv")))
    assert rows[0]["metric"] == "test_accuracy" and float(rows[0]["value"]) == result["test_accuracy"]
    assert (tmp_path / "svm.md").read_text().startswith("**svm** on modelnet40")

    proc = run_cli("pcssl-train", "eval", *common, "-p", "fewshot", "--ways", "2,3,4", "--shots", "4", "--trials", "3",
                   "-o", str(tmp_path / "fs.json"))
    assert proc.returncode == 0, proc.stderr
    settings = json.loads((tmp_path / "fs.json").read_text())["settings"]
    assert [(s["ways"], s["shots"], len(s["accuracies"])) for s in settings] == [(2, 4, 3), (3, 4, 3)]
    assert "3-way 4-shot:" in proc.stdout and "skipped: 4-way 4-shot needs 4 classes" in proc.stdout  # 3 classes

    proc = run_cli("pcssl-train", "eval", *common, "-p", "finetune", "--epochs", "2", "--batch-size", "8",
                   "-o", str(tmp_path / "ft.json"))
    assert proc.returncode == 0, proc.stderr
    ft = json.loads((tmp_path / "ft.json").read_text())
    assert len(ft["history"]) == 2 and "test_accuracy_vote" in ft and "10-vote" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["-p", "svm", "-b", "modelnet40", "-r", "/nonexistent/mn40"], "/nonexistent/mn40"),
    (["-p", "partseg", "-b", "modelnet40", "-r", "ROOT"], "needs --benchmark shapenetpart"),
    (["-p", "fewshot", "-b", "modelnet40", "-r", "ROOT", "--ways", "x"], "comma-separated integers"),
])
def test_cli_eval_bad_input_is_one_line(args, message, tmp_path):
    root = tmp_path / "mn40"
    write_modelnet40(root, per_class=2)
    save_tiny_encoder(tmp_path / "enc.pt")
    proc = run_cli("pcssl-train", "eval", str(tmp_path / "enc.pt"), *[a.replace("ROOT", str(root)) for a in args])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = run_cli("pcssl-train", "eval", str(tmp_path / "nothing.pt"), "-p", "svm", "-b", "cma", "-r", str(root))
    assert proc.returncode == 2 and "no such encoder file or run folder" in proc.stderr


def write_shapenetpart(root, seed=0):
    """Airplane (parts 0-3 by height quartile) and Mug (36/37 by side), in the official layout."""
    rng = np.random.default_rng(seed)
    (root / "train_test_split").mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text("Airplane\t02691156\nMug\t03797390\n")
    for split, n in (("train", 6), ("val", 2), ("test", 4)):
        names = []
        for i in range(n):
            synset = ("02691156", "03797390")[i % 2]
            xyz = rng.uniform(-1, 1, (300, 3))
            part = np.clip(((xyz[:, 1] + 1) * 2).astype(int), 0, 3) if i % 2 == 0 else 36 + (xyz[:, 0] > 0)
            (root / synset).mkdir(exist_ok=True)
            np.savetxt(root / synset / f"{split}{i}.txt", np.column_stack([xyz, xyz, part]), fmt="%.6f")
            names.append(f"shape_data/{synset}/{split}{i}")
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(names))


def test_cli_eval_partseg_on_shapenetpart_files(tmp_path):
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    write_shapenetpart(root)
    save_tiny_encoder(tmp_path / "enc.pt")
    proc = run_cli("pcssl-train", "eval", str(tmp_path / "enc.pt"), "-p", "partseg", "-b", "shapenetpart", "-r",
                   str(root), "--points", "256", "--epochs", "2", "--batch-size", "4", "--no-progress",
                   "-o", str(tmp_path / "seg.json"))
    assert proc.returncode == 0, proc.stderr
    seg = json.loads((tmp_path / "seg.json").read_text())
    assert len(seg["history"]) == 2 and 0 <= seg["instance_miou"] <= 1 and set(seg["per_category"]) == {"Airplane", "Mug"}
    assert "instance mIoU" in proc.stdout
    rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(open(tmp_path / "seg.csv"))}
    assert rows["instance_miou"] == seg["instance_miou"] and rows["category_miou"] == seg["category_miou"]


# --- the benchmark ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory):
    """4 models per category rendered small, with the index's splits set to 2 train / 1 val / 1 test."""
    import subprocess
    import sys
    from pathlib import Path

    base = tmp_path_factory.mktemp("bench")
    synthesize(base / "tree", per_category=4, seed=1, show_progress=False)
    cmd = [str(Path(sys.executable).parent / "cma-build"), "render", "--shapenet", str(base / "tree"),
           "--out", str(base / "ds"), *SMALL, "--views", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = base / "ds" / "index.csv"
    rows = list(csv.DictReader(open(index)))
    seen: dict = {}
    for r in rows:
        k = seen[r["synset_id"]] = seen.get(r["synset_id"], -1) + 1
        r["split"] = ("train", "train", "val", "test")[k]
    with open(index, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return base / "ds"


def test_view_clouds_are_rotated_views_split_by_object(split_dataset):
    train, test = view_clouds(split_dataset, "train"), view_clouds(split_dataset, "test")
    assert len(train) == 8 * 2 * 2 and len(test) == 8 * 2
    objects = lambda s: {i.rsplit("/", 1)[0] for i in s.ids}  # noqa: E731
    assert not objects(train) & objects(test)
    # Rotation about +y only: the height of every point is kept.
    again = view_clouds(split_dataset, "test", seed=1)
    np.testing.assert_allclose(test.points[..., 1], again.points[..., 1], atol=1e-5)
    assert not np.allclose(test.points[..., 0], again.points[..., 0])


def test_benchmark_writes_table_json_csv_and_plot(split_dataset, tmp_path):
    out = tmp_path / "bench"
    r = run_benchmark(out, ["point-mae"], data=split_dataset, epochs=2, eval_every=1, batch_size=4,
                      progress=False, command="pcssl-train benchmark (test)", ways=2, shots=2, random_seeds=3)
    row = r["results"][0]
    assert len(row["random_svm_views_seeds"]) == 3 and row["random_svm_views_seeds"][0] == row["random_svm_views"]
    lo, hi = row["svm_views_difference_ci95"]
    assert lo <= row["pretrained_svm_views"] - row["random_svm_views"] <= hi
    assert [h["epoch"] for h in row["history"]] == [0, 1, 2]
    assert row["history"][0]["svm_views"] == row["random_svm_views"]
    assert row["history"][-1]["svm_views"] == row["pretrained_svm_views"]
    table = (out / "results.md").read_text()
    assert "pcssl-train benchmark (test)" in table and "| point-mae | point_transformer" in table
    assert "2-way 2-shot" in table and "(one per object for training: 16/8)" in table
    assert row["fewshot_support"] == "one view per training object" and "Few-shot support: one view" in table
    assert "C of the SVM on 1 view per object: chosen by 2-fold CV on train (val split has only 8 samples, fewer " \
           "than 16)" in table  # 8 val objects of 8 classes
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["evaluation"]["views"] == [32, 16, 16] and data["meta"]["evaluation"]["fused"] == [16, 8, 8]
    for key in ("svm_views", "svm_views_all", "svm_fused", "fewshot_mean"):
        assert 0 <= row[f"pretrained_{key}"] <= 1 and 0 <= row[f"random_{key}"] <= 1
    assert list(csv.DictReader(open(out / "results.csv")))[0]["method"] == "point-mae"
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Reusing the folder skips the finished pretraining and gives the same numbers.
    again = run_benchmark(out, ["point-mae"], data=split_dataset, epochs=2, eval_every=1, batch_size=4,
                          progress=False, ways=2, shots=2)
    assert again["results"][0]["pretrained_svm_views"] == row["pretrained_svm_views"]


def test_fewshot_support_pool_and_hints():
    counts = {"train_objects": {"a": 12, "b": 3, "c": 3, "d": 9}, "train_views": {"a": 48, "b": 12, "c": 12, "d": 36},
              "test_views": {"a": 2, "b": 1, "c": 1}}  # d: no test view, never a few-shot class
    assert fewshot_support(counts, 2, 3) == "objects" and fewshot_support(counts, 3, 3) == "objects"
    assert fewshot_support(counts, 2, 10) == "views"  # only a has 10 objects; a, b and c have 12 views
    with pytest.raises(TrainError) as e:
        fewshot_support(counts, 3, 20, "DS")
    assert str(e.value) == ("3-way 20-shot few-shot needs 3 classes with a test view and at least 20 training views; "
                            "DS has 1 (training views of each class with a test view: a 48, c 12, b 12); --shots 12 "
                            "would work")
    with pytest.raises(TrainError, match="; --ways 3 would work$"):
        fewshot_support(counts, 4, 10)
    with pytest.raises(TrainError, match="at least 2"):
        fewshot_support(counts, 1, 10)
    with pytest.raises(TrainError, match="DS has no test object .*, so no --ways / --shots setting would work$"):
        fewshot_support({**counts, "test_views": {}}, 2, 1, "DS")


def test_benchmark_checks_fewshot_before_any_work(split_dataset, tmp_path):
    """2 training objects of 2 views per class: 5-way 10-shot is impossible, said before pretraining."""
    assert split_counts(split_dataset) == _view_counts(view_clouds(split_dataset, "train"),
                                                       view_clouds(split_dataset, "test"))
    out = tmp_path / "bench"
    with pytest.raises(TrainError, match=r"^5-way 10-shot few-shot needs 5 classes .* has 0 .*; --shots 4 would work$"):
        run_benchmark(out, ["point-mae"], data=split_dataset, epochs=1)
    assert not out.exists()
    # The mini-ShapeNet it would synthesize: the split follows from the model ids, known up front.
    with pytest.raises(TrainError, match=r"the mini-ShapeNet of 2 models per category \(seed 0\) has 0"):
        run_benchmark(out, ["point-mae"], per_category=2, epochs=1)
    assert not out.exists()
    proc = run_cli("pcssl-train", "benchmark", "-d", str(split_dataset), "-o", str(out), "--epochs", "1")
    assert proc.returncode == 2 and "--shots 4 would work" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


def test_paired_bootstrap_resamples_whole_objects():
    from pcssl_train.eval.benchmark import paired_bootstrap

    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    right = np.ones(8, bool)
    assert paired_bootstrap(right, right, groups) == (0.0, 0.0)
    assert paired_bootstrap(right, ~right, groups) == (1.0, 1.0)
    # a better only on object "a" (both views): the difference is 0 or a multiple of 1/4 of the objects
    b = right.copy()
    b[:2] = False
    lo, hi = paired_bootstrap(right, b, groups, resamples=4000)
    assert lo == 0.0 and 0.5 <= hi <= 0.75  # P(a drawn >= 2 of 4) ~ 26%, >= 3 of 4 ~ 5%
    assert paired_bootstrap(right, b, groups, seed=1) == paired_bootstrap(right, b, groups, seed=1)


def test_markdown_and_plot_from_results(tmp_path):
    rows = [{"method": m, "encoder": "point_transformer", "encoder_params": 440000, "epochs": 20, "seed": 0,
             "fewshot": "5-way 10-shot", "pretrained_svm_views": 0.9, "random_svm_views": 0.8,
             "pretrained_svm_views_all": 0.95, "random_svm_views_all": 0.97,
             "pretrained_fewshot_mean": 0.85, "pretrained_fewshot_std": 0.05, "random_fewshot_mean": 0.7,
             "random_fewshot_std": 0.04, "pretrained_svm_fused": 1.0, "random_svm_fused": 1.0, "pretrain_seconds": 60,
             "svm_views_difference_ci95": (-0.05, 0.25), "random_svm_views_seeds": [0.8, 0.7, 0.9],
             "random_svm_views_seeds_mean": 0.8, "random_svm_views_seeds_std": 0.0816,
             "history": [{"epoch": 0, "svm_views": 0.8}, {"epoch": 20, "svm_views": 0.9}]} for m in ("a", "b")]
    md = markdown(rows, {"command": "cmd", "dataset": "ds", "torch": "x", "evaluation": {
        "views": [1, 2, 3], "one_view": [1, 1], "fused": [4, 5, 6]}})
    assert ("| a | point_transformer (0.44M) | 20 | **90.0** | 80.0 | +10.0 (-5.0, +25.0) | 80.0 ± 8.2 | **85.0 ± 5.0** "
            "| 70.0 ± 4.0 | 95.0 | **97.0** | 100.0 | 100.0 | 60 |") in md
    assert "random init, 3 seeds" in md
    plot(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
