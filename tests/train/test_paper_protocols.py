"""The papers' own data files and protocols: the restricted unpickler (a crafted pickle runs nothing),
ModelNet40/10 as the Point-BERT family and PointNet++ distribute them (text files, .dat caches, h5),
the official few-shot folds, the SVM presets (features checked against the official Point-MAE encoder
computed from the fixture's weights), ``pcssl-train report``, and pretraining on ShapeNet-55 and
ModelNet point folders."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark_files import class_names, write_dat, write_folds, write_resampled, write_shapenet55
from conftest import BIN, REPO
from pcssl_train.eval.fewshot import support_query_accuracy
from pcssl_train.eval.fewshot_folds import available, read_folds
from pcssl_train.eval.modelnet_files import parse_rows
from pcssl_train.eval.protocols import run_protocol
from pcssl_train.eval.readers import load_benchmark
from pcssl_train.eval.safe_pickle import load_data_pickle, loads_data
from pcssl_train.eval.svm_presets import POOLINGS, PRESETS, pool, token_features
from pcssl_train.ops.reference import farthest_point_sample_ref
from test_readers import raises

FIXTURE = Path(os.environ.get("CMA_POINT_MAE_FIXTURE", REPO.parent / "shared" / "fixtures" / "point-mae-official"))
needs_fixture = pytest.mark.skipif(not (FIXTURE / "expected.json").is_file(),
                                   reason=f"official Point-MAE fixture not found at {FIXTURE}")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "pcssl-train"), *args], capture_output=True, text=True, timeout=900)


def one_line_error(r: subprocess.CompletedProcess, *parts: str) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.stderr, r.stderr
    for p in parts:
        assert p in lines[0], lines[0]
    return lines[0]


# --- pickles: plain data only -----------------------------------------------------------------
class RunsCode:
    """Unpickling this calls ``fn(*args)``: what a malicious .dat / .pkl does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_data_pickles_round_trip_in_every_protocol():
    obj = [[np.arange(12, dtype=np.float32).reshape(4, 3)], [np.array([7]).astype(np.int32)],
           {"train": [(np.ones((2, 6), np.float32), 1, np.int32(17))], "k": (1, 2.5, "x", b"yz", None, True)},
           np.int64(3), np.float32(0.5), {1, 2}, frozenset({3})]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        got = loads_data(pickle.dumps(obj, protocol=protocol))
        assert np.array_equal(got[0][0], obj[0][0]) and got[0][0].dtype == np.float32, protocol
        assert got[1][0].dtype == np.int32 and int(got[1][0][0]) == 7
        assert got[2]["k"] == obj[2]["k"] and int(got[2]["train"][0][2]) == 17
        assert got[3] == 3 and got[4] == np.float32(0.5) and got[5] == {1, 2} and got[6] == frozenset({3})


@pytest.mark.parametrize("fn,args,name", [
    (os.system, ("touch {marker}",), "system"),
    (eval, ("open({marker!r}, 'w').write('x')",), "builtins.eval"),
    (subprocess.Popen, (["touch", "{marker}"],), "subprocess.Popen"),
    (np.save, ("{marker}", np.zeros(1)), "save"),
])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, fn, args, name):
    marker = tmp_path / "ran"
    args = tuple(a.format(marker=str(marker)) if isinstance(a, str) else
                 [x.format(marker=str(marker)) for x in a] if isinstance(a, list) else a for a in args)
    payload = pickle.dumps([[np.zeros((4, 6), np.float32)], [RunsCode(fn, *args)]], protocol=4)
    assert "ran" not in os.listdir(tmp_path)
    path = tmp_path / "modelnet40_test_8192pts_fps.dat"
    path.write_bytes(payload)
    msg = raises(load_data_pickle, path, match=f"refused|{name}|could run code")
    assert not marker.exists(), msg
    # numpy's array rebuild cannot be pointed at another class, nor allocate what the file does not hold
    for evil in (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85C\x01b\x87R.",
                 b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\xe4\x0bT\x85C\x01b\x87R."):
        path.write_bytes(evil)
        raises(load_data_pickle, path, match="not a readable")
    path.write_bytes(payload[:40])
    raises(load_data_pickle, path, match="not a readable")


def _dtype_with_state(state: tuple) -> bytes:
    """A pickle of dtype('f8') whose BUILD state is ``state`` (what a crafted file can say)."""
    return (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R" + pickle.dumps(state, protocol=2)[2:-1]
            + b"b.")


def test_numpys_own_rebuilders_cannot_make_what_the_reader_refuses(tmp_path):
    """Allowed names used against the reader: ndarray called directly (object arrays, gigabytes from a few
    bytes), dtype states that turn on the object flag or add fields, array states whose bytes do not
    match their shape. Each is refused in one line; the plain versions load."""
    path = tmp_path / "x.pkl"
    assert loads_data(_dtype_with_state((3, "<", None, None, None, -1, -1, 0))) == np.dtype("f8")
    for state, why in (((3, "<", None, None, None, -1, -1, 0x1B), "not plain"),          # object flags on f8
                       ((3, "|", None, ("a",), {"a": (np.dtype("f8"), 10 ** 12)}, 8, 1, 0), "not plain")):
        path.write_bytes(_dtype_with_state(state))
        raises(load_data_pickle, path, match=f"not a readable|{why}")
    ndarray_call = b"\x80\x02cnumpy\nndarray\nJ\x80\xf0\xfa\x02K\x06\x86X\x02\x00\x00\x00f4\x86R."
    path.write_bytes(ndarray_call)                       # ndarray((50_000_000, 6), 'f4'): 1.2 GB from 40 bytes
    raises(load_data_pickle, path, match="not a readable|not callable")
    arr = pickle.dumps(np.zeros(4, np.float32), protocol=2)
    assert loads_data(arr).tolist() == [0, 0, 0, 0]
    short = arr.replace(b"X\x10\x00\x00\x00" + b"\x00" * 16, b"X\x08\x00\x00\x00" + b"\x00" * 8)  # 8 bytes, 4 float32
    assert short != arr
    path.write_bytes(short)
    raises(load_data_pickle, path, match="not a readable|bytes do not match its shape")
    path.write_bytes(pickle.dumps(np.array([None, 1], dtype=object), protocol=4))
    raises(load_data_pickle, path, match="not a readable")
    path.write_bytes(b"x,y,z\n1,2,3\n")                  # not a pickle at all
    raises(load_data_pickle, path, match="not a readable")


def test_crafted_dat_and_fold_via_cli_exit_2_and_run_nothing(tmp_path):
    marker = tmp_path / "ran"
    mn = tmp_path / "modelnet40_normal_resampled"
    truth = write_resampled(mn, rows=64)
    with open(mn / "modelnet40_test_8192pts_fps.dat", "wb") as fh:
        pickle.dump([[p for _, _, p in truth[(40, "test")]], [RunsCode(os.system, f"touch {marker}")]], fh, protocol=2)
    enc = tmp_path / "enc.pt"
    _export_tiny(enc)
    r = cli("eval", str(enc), "-p", "svm", "-r", str(mn), "--points", "32")
    one_line_error(r, "modelnet40_test_8192pts_fps.dat", "refused", "posix.system")
    folds = tmp_path / "ModelNetFewshot"
    write_folds(folds, 5, 10, folds=1, rows=64)
    with open(folds / "5way_10shot" / "0.pkl", "wb") as fh:
        pickle.dump({"train": [(RunsCode(os.system, f"touch {marker}"), 0, 0)], "test": []}, fh)
    r = cli("eval", str(enc), "-p", "fewshot", "--folds", str(folds), "--ways", "5", "--shots", "10", "--points", "32")
    one_line_error(r, "0.pkl", "refused", "system")
    assert not marker.exists()


def _export_tiny(path: Path) -> None:
    """A tiny point-transformer encoder export (16 patches of 16 points)."""
    from pcssl_train.methods import create_method
    from pcssl_train.export import FORMAT

    m = create_method("point-mae", num_group=16, group_size=16, width=32, depth=1, num_heads=2, decoder_depth=1,
                      decoder_heads=2)
    name, config, weights = m.encoder_export()
    torch.save({"format": FORMAT, "model": name, "config": config, "state_dict": weights, "method": "point-mae",
                "epoch": 0}, path)


# --- ModelNet as distributed ------------------------------------------------------------------
def test_modelnet_normal_resampled_text_files(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    truth = write_resampled(root, both=True, rows=64)
    for classes in (40, 10):
        for split in ("train", "test"):
            items = truth[(classes, split)]
            fps = load_benchmark(f"modelnet{classes}", root, split, num_points=20)
            first = load_benchmark(f"modelnet{classes}", root, split, num_points=20, sampling="first")
            assert fps.ids == [s for s, _, _ in items] and fps.labels.tolist() == [lab for _, lab, _ in items]
            assert fps.class_names == class_names(40)[:classes]
            for i, (sid, _, _) in enumerate(items):
                xyz = np.loadtxt(root / s_path(sid), delimiter=",")[:, :3]   # numpy's reader, not ours
                np.testing.assert_allclose(first.points[i], xyz[:20], atol=1e-6)
                ref = farthest_point_sample_ref(torch.from_numpy(xyz)[None], 20, start=0)[0].numpy()
                np.testing.assert_allclose(fps.points[i], xyz[ref], atol=1e-6)
            assert "fps" in fps.origin and "text files" in fps.origin and "first" in first.origin


def s_path(shape_id: str) -> str:
    return f"{shape_id.rsplit('_', 1)[0]}/{shape_id}.txt"


def test_modelnet_dat_cache_is_read_in_place_of_the_text(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    truth = write_resampled(root, rows=64)
    for protocol in (2, 4, 5):
        dat = write_dat(root, 40, "test", truth[(40, "test")], 48, protocol=protocol)
        ps = load_benchmark("modelnet40", root, "test", num_points=48, sampling="first")
        with open(dat, "rb") as fh:
            points, labels = pickle.load(fh)      # our own file, written just now
        assert ps.origin.startswith(f"{root.name} (official cache {dat.name})")
        np.testing.assert_array_equal(ps.points, np.stack([p[:, :3] for p in points]))
        assert ps.labels.tolist() == [int(lab[0]) for lab in labels] and ps.ids[0] == truth[(40, "test")][0][0]
    # the train split has no cache: its text files are read
    assert "text files" in load_benchmark("modelnet40", root, "train", num_points=16).origin


def test_modelnet10_h5_layout_and_layout_errors(tmp_path):
    import h5py

    root = tmp_path / "modelnet10_ply_hdf5_2048"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = rng.standard_normal((n, 64, 3)).astype(np.float32)
            f["label"] = (np.arange(n) % 10).astype(np.uint8)[:, None]
        (root / f"{split}_files.txt").write_text(f"data/modelnet10_ply_hdf5_2048/ply_data_{split}0.h5\n")
    (root / "shape_names.txt").write_text("\n".join(class_names(10)) + "\n")
    ps = load_benchmark("modelnet10", root, "test", num_points=32)
    assert ps.points.shape == (4, 32, 3) and ps.class_names == class_names(10) and "first" in ps.origin
    raises(load_benchmark, "modelnet40", root, "test", match="shape_names.txt|lists 10 class names|expected 40")
    (root / "shape_names.txt").unlink()      # no names, and labels of 40 classes: not ModelNet10
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        f["label"][0] = 37
    raises(load_benchmark, "modelnet10", root, "test", match="labels go up to 37|ModelNet10's 10 classes")
    other = tmp_path / "other"
    write_resampled(other, classes=10, rows=32)
    raises(load_benchmark, "modelnet40", other, "test", match="not a ModelNet40 folder|use -b modelnet10")


def test_modelnet_bad_files_are_one_line_errors(tmp_path):
    root = tmp_path / "mn"
    write_resampled(root, rows=32)
    bad = root / "shape03" / "shape03_0002.txt"
    text = bad.read_text().splitlines()
    text[6] = "0.1,0.2,abc,0,0,1"
    bad.write_text("\n".join(text))
    raises(load_benchmark, "modelnet40", root, "train", num_points=8, match="shape03_0002.txt|line 7|not numbers")
    text[6] = "0.1,0.2,0.3,0,0"
    bad.write_text("\n".join(text))
    raises(load_benchmark, "modelnet40", root, "train", num_points=8, match="shape03_0002.txt|line 7|6 comma-separated")
    bad.unlink()
    raises(load_benchmark, "modelnet40", root, "train", num_points=8, match="missing shape03/shape03_0002.txt")
    (root / "modelnet40_test.txt").unlink()
    raises(load_benchmark, "modelnet40", root, "test", match="missing modelnet40_test.txt")
    (root / "modelnet40_train.txt").write_text("../../etc/passwd_0001\n")
    raises(load_benchmark, "modelnet40", root, "train", match="modelnet40_train.txt|line 1|not a '<class>_<number>'")
    (root / "modelnet40_train.txt").write_text("nosuchclass_0001\n")
    raises(load_benchmark, "modelnet40", root, "train", match="line 1|'nosuchclass' is not in modelnet40_shape_names")
    (root / "modelnet40_train_8192pts_fps.dat").write_bytes(pickle.dumps({"points": 1}))
    raises(load_benchmark, "modelnet40", root, "train", match="expected [list of point arrays, list of labels]")
    assert parse_rows(Path("x.txt"), "1,2,3\n4,5,6\n").shape == (2, 3)
    for row, why in (("1e40,0,0,0,0,1", "not a finite number"), ("1_0,0,0,0,0,1", "not numbers"),
                     ("nan,0,0,0,0,1", "not a finite number")):
        raises(parse_rows, Path("x.txt"), "0,0,0,0,0,1\n" + row + "\n", match=f"x.txt|line 2|{why}")
    # a cache whose clouds are not finite, or ragged
    root2 = tmp_path / "mn2"
    truth = write_resampled(root2, rows=32)
    items = truth[(40, "test")]
    bad_pts = [p.copy() for _, _, p in items]
    bad_pts[3][5, 1] = np.nan
    with open(root2 / "modelnet40_test_32pts_fps.dat", "wb") as fh:
        pickle.dump([bad_pts, [np.array([lab]).astype(np.int32) for _, lab, _ in items]], fh)
    raises(load_benchmark, "modelnet40", root2, "test", num_points=8, match="entry 3|NaN or infinite")
    with open(root2 / "modelnet40_test_32pts_fps.dat", "wb") as fh:
        pickle.dump([[[[1.0, 2.0, 3.0], [1.0, 2.0]]], [np.array([0]).astype(np.int32)]], fh)
    raises(load_benchmark, "modelnet40", root2, "test", num_points=8, match="entry 0|ragged")


# --- official few-shot folds ------------------------------------------------------------------
def test_fewshot_folds_are_read_and_checked(tmp_path):
    root = tmp_path / "ModelNetFewshot"
    write_folds(root, 5, 10, folds=3, rows=40)
    write_folds(root, 10, 20, folds=2, rows=40)
    assert sorted(available(root)) == [(5, 10), (10, 20)]
    assert list(available(root / "5way_10shot")) == [(5, 10)]
    folds = read_folds(root / "5way_10shot", 5, 10, num_points=24, sampling="first")
    assert [f.fold for f in folds] == [0, 1, 2]
    with open(root / "5way_10shot" / "1.pkl", "rb") as fh:
        raw = pickle.load(fh)
    f = folds[1]
    assert f.train_points.shape == (50, 24, 3) and f.test_points.shape == (20, 24, 3)
    np.testing.assert_array_equal(f.train_points[7], raw["train"][7][0][:24, :3])
    assert f.train_labels.tolist() == [item[1] for item in raw["train"]]
    assert f.classes == [int(raw["train"][10 * i][2]) for i in range(5)]
    # a fold naming another class count than its folder, or a support set of another size
    write_folds(tmp_path / "x", 10, 10, folds=1, rows=40)
    os.replace(tmp_path / "x" / "10way_10shot" / "0.pkl", root / "5way_10shot" / "2.pkl")
    raises(read_folds, root / "5way_10shot", 5, 10, 24, match="2.pkl|label 5 is outside 0..4|5-way")
    write_folds(tmp_path / "y", 5, 20, folds=1, rows=40)
    os.replace(tmp_path / "y" / "5way_20shot" / "0.pkl", root / "5way_10shot" / "2.pkl")
    raises(read_folds, root / "5way_10shot", 5, 10, 24, match="2.pkl|20..20 clouds per class|10-shot")
    (root / "5way_10shot" / "2.pkl").write_bytes(pickle.dumps({"train": [], "test": []}))
    raises(read_folds, root / "5way_10shot", 5, 10, 24, match="non-empty 'train' and 'test'")


def test_fewshot_on_official_folds_reports_mean_and_std_over_folds(tmp_path):
    from pcssl_train.eval.features import extract_features, load_spec

    root = tmp_path / "ModelNetFewshot"
    write_folds(root, 5, 10, folds=3, rows=40)
    enc = tmp_path / "enc.pt"
    _export_tiny(enc)
    r = run_protocol(enc, "fewshot", "modelnet40", None, folds=root, ways="5,10", shots="10", num_points=32)
    (row,) = r["settings"]
    assert row["trials"] == 3 and r["episodes"] == "official folds" and "10-way 10-shot" in r["skipped"][0]
    model = load_spec(enc).build(0)
    accs = [support_query_accuracy(extract_features(model, f.train_points), f.train_labels,
                                   extract_features(model, f.test_points), f.test_labels)
            for f in read_folds(root / "5way_10shot", 5, 10, 32, "fps")]
    assert row["accuracies"] == pytest.approx(accs) and row["mean"] == pytest.approx(np.mean(accs))
    assert row["std"] == pytest.approx(np.std(accs))
    assert "mean ± std over 3 official folds" in r["summary"]


# --- the official Point-MAE encoder, from the fixture's weights -------------------------------
def official_encoder_tokens(state: dict, neighborhood: torch.Tensor, center: torch.Tensor, heads: int) -> torch.Tensor:
    """Point-MAE's MaskTransformer with nothing masked (noaug): Encoder -> pos_embed -> blocks (x + pos
    before each) -> LayerNorm, written from the official models/Point_MAE.py (commit 7445a68) as plain
    functions of the checkpoint's own tensors (keys ``MAE_encoder.*``), eval mode."""
    p = {k[len("MAE_encoder."):]: v for k, v in state.items() if k.startswith("MAE_encoder.")}

    def conv(x, name):
        return F.conv1d(x, p[f"{name}.weight"], p[f"{name}.bias"])

    def bn(x, name):
        return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.weight"],
                            p[f"{name}.bias"], False, 0.0, 1e-5)

    b, g, n, _ = neighborhood.shape
    x = neighborhood.reshape(b * g, n, 3).transpose(2, 1)
    f = conv(F.relu(bn(conv(x, "encoder.first_conv.0"), "encoder.first_conv.1")), "encoder.first_conv.3")
    f = torch.cat([f.amax(dim=2, keepdim=True).expand(-1, -1, n), f], dim=1)
    f = conv(F.relu(bn(conv(f, "encoder.second_conv.0"), "encoder.second_conv.1")), "encoder.second_conv.3")
    x = f.amax(dim=2).reshape(b, g, -1)
    pos = F.linear(F.gelu(F.linear(center, p["pos_embed.0.weight"], p["pos_embed.0.bias"])),
                   p["pos_embed.2.weight"], p["pos_embed.2.bias"])
    c = x.shape[-1]
    depth = len({k.split(".")[2] for k in p if k.startswith("blocks.blocks.")})
    for i in range(depth):
        q = f"blocks.blocks.{i}."
        x = x + pos

        def ln(t, name):
            return F.layer_norm(t, (c,), p[q + name + ".weight"], p[q + name + ".bias"], 1e-5)

        h = ln(x, "norm1")
        qkv = F.linear(h, p[q + "attn.qkv.weight"]).reshape(b, g, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
        h = (attn @ qkv[2]).transpose(1, 2).reshape(b, g, c)
        x = x + F.linear(h, p[q + "attn.proj.weight"], p[q + "attn.proj.bias"])
        h = F.linear(F.gelu(F.linear(ln(x, "norm2"), p[q + "mlp.fc1.weight"], p[q + "mlp.fc1.bias"])),
                     p[q + "mlp.fc2.weight"], p[q + "mlp.fc2.bias"])
        x = x + h
    return F.layer_norm(x, (c,), p["norm.weight"], p["norm.bias"], 1e-5)


@needs_fixture
def test_every_preset_feature_matches_the_official_encoder_tokens():
    from pcssl_train.eval.features import load_spec

    ckpt = torch.load(FIXTURE / "pretrain.pth", weights_only=True)   # the fixture: our own test data, read safely
    state = {k.removeprefix("module."): v for k, v in ckpt["base_model"].items()}
    inputs = torch.load(FIXTURE / "inputs.pt", weights_only=True)
    expected = json.loads((FIXTURE / "expected.json").read_text())
    heads = expected["config"]["pretrain"]["transformer_config"]["num_heads"]
    tokens = official_encoder_tokens(state, torch.load(FIXTURE / "neighborhood.pt", weights_only=True),
                                     torch.load(FIXTURE / "centers.pt", weights_only=True), heads)
    assert tokens.shape == (4, 64, 96)
    spec = load_spec(FIXTURE / "pretrain.pth")
    enc = spec.build(0)
    with torch.no_grad():
        glob, local = enc.forward_tokens(inputs["points"])
    assert glob is None   # Point-MAE's encoder has no cls token: ReCon's global half has nothing to stand on
    torch.testing.assert_close(local, tokens, rtol=1e-5, atol=1e-5)
    want = {"cv": torch.cat([tokens.amax(1), tokens.mean(1)], -1), "crosspoint": torch.cat([tokens.amax(1),
                                                                                           tokens.mean(1)], -1),
            "point-m2ae": tokens.amax(1) + tokens.mean(1), "recon": tokens.amax(1) + tokens.mean(1)}
    points = inputs["points"].numpy()
    for name, preset in PRESETS.items():
        got = token_features(enc, points, preset.pooling, preset.normalize)
        np.testing.assert_allclose(got, want[name].numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
        one_pass = token_features(enc, points, POOLINGS, preset.normalize)[preset.pooling]   # what report uses
        np.testing.assert_array_equal(one_pass, got)
    # with a cls token (the fine-tuned PointTransformer): ReCon's first half is the max over global tokens
    cls = torch.randn(4, 1, 96)
    torch.testing.assert_close(pool(cls, tokens, "recon"), torch.cat([cls[:, 0], tokens.amax(1) + tokens.mean(1)], -1))


@needs_fixture
def test_official_checkpoint_runs_through_every_preset(tmp_path):
    mn = tmp_path / "modelnet40_normal_resampled"
    truth = write_resampled(mn, rows=1100, train=2, test=1)
    write_dat(mn, 40, "test", truth[(40, "test")], 1050)
    lines = {}
    for name in PRESETS:
        out = tmp_path / f"{name}.json"
        r = cli("eval", str(FIXTURE / "pretrain.pth"), "-p", "svm", "-r", str(mn), "--svm-protocol", name, "-o", str(out))
        assert r.returncode == 0, r.stderr
        res = json.loads(out.read_text())
        assert res["svm_protocol"] == name and res["test_size"] == 40 and 0 <= res["test_accuracy"] <= 1
        lines[name] = r.stdout
    assert "LinearSVC(C=0.075)" in lines["recon"] and "ReCon tools/runner_svm.py @eb37728" in lines["recon"]
    assert "no global token" in lines["recon"] and "fps" in lines["recon"]
    assert "SVC(kernel='linear', C=0.012)" in lines["point-m2ae"] and "first" in lines["point-m2ae"]
    assert "SVC(kernel='linear', C=0.1)" in lines["crosspoint"] and "C chosen" in lines["cv"]
    assert "official cache modelnet40_test_1050pts_fps.dat" in json.loads((tmp_path / "recon.json").read_text())["data"]
    r = cli("eval", str(FIXTURE / "pretrain.pth"), "-p", "svm", "-r", str(mn), "--points", "32")
    one_line_error(r, "32 points are too small", "point_transformer")


def test_bad_eval_options_are_one_line_errors(tmp_path):
    enc = tmp_path / "enc.pt"
    _export_tiny(enc)
    mn = tmp_path / "mn"
    write_resampled(mn, rows=40)
    one_line_error(cli("eval", str(enc), "-p", "fewshot", "-r", str(mn), "--svm-protocol", "recon"), "--svm-protocol")
    one_line_error(cli("eval", str(enc), "-p", "svm", "-r", str(mn), "--folds", str(tmp_path)), "--folds applies")
    one_line_error(cli("eval", str(enc), "-p", "fewshot", "--folds", str(tmp_path / "nope")), "--folds", "no such folder")
    one_line_error(cli("eval", str(enc), "-p", "svm"), "--root is required")
    one_line_error(cli("eval", str(enc), "-p", "fewshot", "--folds", str(mn)), "no <way>way_<shot>shot folder")


# --- report -----------------------------------------------------------------------------------
def test_report_puts_our_rows_beside_the_published_ones(tmp_path):
    mn = tmp_path / "modelnet40_normal_resampled"
    write_resampled(mn, rows=1030, train=2, test=1)
    folds = tmp_path / "ModelNetFewshot"
    for w, k in ((5, 10), (10, 10)):
        write_folds(folds, w, k, folds=2, rows=1030, queries=2)
    enc = tmp_path / "enc.pt"
    _export_tiny(enc)
    sonn = tmp_path / "h5_files"
    (sonn / "main_split").mkdir(parents=True)
    rng = np.random.default_rng(0)
    import h5py

    for split, n in (("training", 30), ("test", 15)):
        with h5py.File(sonn / "main_split" / f"{split}_objectdataset.h5", "w") as f:
            f["data"] = rng.standard_normal((n, 2048, 3)).astype(np.float32)
            f["label"] = (np.arange(n) % 15).astype(np.int64)
    out = tmp_path / "report"
    r = cli("report", str(enc), "--modelnet40", str(mn), "--folds", str(folds), "--scanobjectnn", str(sonn), "-o",
            str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "## ScanObjectNN, linear SVM" in r.stdout and "| row | obj_bg/cv | obj_bg/point-m2ae |" in r.stdout
    md = (out / "report.md").read_text()
    assert "| point-mae (this run) |" in md and "| point-mae (random init) |" in md
    assert "| Point-MAE (published) | – | – | – | – | 91.0 [1a] | 96.3 ± 2.5 [1b] | 97.8 ± 1.8 [1b] | 92.6 ± 4.1 [1b] " \
           "| 95.0 ± 3.0 [1b] |" in md
    assert "e13024a" in md and "Pang et al., ECCV 2022" in md and "official folds" in md
    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    ours = {(x["row"], x["protocol"]): x for x in rows if x["row"] == "point-mae (this run)"}
    assert {f"svm {p}" for p in ("cv", "recon", "point-m2ae", "crosspoint")} <= {p for _, p in ours}
    assert ("point-mae (this run)", "fewshot 5w10s") in ours and ("point-mae (this run)", "fewshot 5w20s") not in ours
    rep = json.loads((out / "report.json").read_text())
    assert rep["rows"][0]["fewshot"]["5w10s"]["n"] == 2
    assert rep["rows"][0]["scanobjectnn"]["obj_bg/point-m2ae"]["C"] == 0.042   # Point-M2AE's ScanObjectNN C
    assert "main_split_nobg" in rep["rows"][0]["scanobjectnn"]["skipped"][0]      # OBJ-ONLY not given: said
    one_line_error(cli("report", str(enc), "--modelnet40", str(tmp_path / "nope"), "-o", str(out)),
                   "--modelnet40", "no such folder")
    (tmp_path / "afile").write_text("x")
    one_line_error(cli("report", str(enc), "--modelnet40", str(mn), "-o", str(tmp_path / "afile")), "--out")


# --- pretraining on point folders -------------------------------------------------------------
def test_point_folders_sample_like_the_official_loaders(tmp_path):
    from cma_builder.geometry.normalize import normalize_params
    from pcssl_train.data.point_folder import PointFolderDataset, point_folder_layout

    sn = write_shapenet55(tmp_path / "ShapeNet55-34", per=3, rows=100)
    assert point_folder_layout(sn) == point_folder_layout(sn / "ShapeNet-55") == "shapenet55"
    ds = PointFolderDataset(sn, split="train", num_points=64, seed=3)
    assert len(ds) == 6 and ds.class_names == ["02691156", "03001627", "04379243"]
    for i in range(len(ds)):
        raw = np.load(ds.files[i])
        rows = ds._sample(i, np.random.default_rng([3, 0, i]))        # what sample i of epoch 0 drew
        picked = [int(np.flatnonzero((raw == r).all(1))[0]) for r in rows]
        assert len(set(picked)) == 64                                  # 64 distinct rows of the file
        s, t = normalize_params(rows)                                  # then pc_norm: centroid 0, max radius 1
        np.testing.assert_allclose(ds[(0, i)]["points"].numpy(), rows * s + t, atol=1e-6)
    assert not torch.equal(ds[(1, 2)]["points"], ds[(2, 2)]["points"])   # another epoch, another draw
    mn = tmp_path / "mn"
    write_resampled(mn, rows=80, train=1, test=1)
    mds = PointFolderDataset(mn, split="all", num_points=16)
    assert mds.layout == "modelnet40" and len(mds) == 80
    rng = np.random.default_rng([0, 0, 5])
    start = int(rng.integers(80))
    ref = farthest_point_sample_ref(torch.from_numpy(mds.clouds[5].astype(np.float64))[None], 16, start=start)[0]
    np.testing.assert_allclose(mds._sample(5, np.random.default_rng([0, 0, 5])), mds.clouds[5][ref.numpy()])


def test_pretrain_on_shapenet55_export_and_modelnet_folders(rendered, tmp_path):
    exported = tmp_path / "ShapeNet55-34"
    r = subprocess.run([str(BIN / "cma-build"), "export", str(rendered), "--format", "shapenet55", "--out",
                        str(exported), "--points", "256"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run-sn55"
    r = cli("pretrain", "-c", "point-mae-tiny", "-d", str(exported), "-o", str(run), "--set", "optim.epochs=1",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    rec = json.loads((run / "data.json").read_text())
    assert rec["format"] == "shapenet55" and rec["samples"] == len(list((exported / "shapenet_pc").glob("*.npy")))
    mn = tmp_path / "modelnet40_normal_resampled"
    write_resampled(mn, rows=300, train=1, test=1)
    r = cli("pretrain", "-c", "serp-transformer-tiny", "-d", str(mn), "-o", str(tmp_path / "run-mn"), "--set",
            "optim.epochs=1", "--set", "data.split=train", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run-mn" / "data.json").read_text())["samples"] == 40
    r = cli("pretrain", "-c", "mm-point-tiny", "-d", str(mn), "-o", str(tmp_path / "run-mm"), "--no-progress")
    one_line_error(r, "mm-point learns from images and cameras", "cma-build dataset")
    assert not (tmp_path / "run-mm").exists()
    # resuming on other data is refused (the run's data.json says what it started on)
    r = cli("pretrain", "-c", "point-mae-tiny", "-d", str(mn), "-o", str(run), "--set", "optim.epochs=1",
            "--no-progress")
    one_line_error(r, "was started on ShapeNet-55 point folder", "resume with the same data")
    (exported / "ShapeNet-55" / "train.txt").write_text("02691156-../../x.npy\n")
    r = cli("pretrain", "-c", "point-mae-tiny", "-d", str(exported), "-o", str(tmp_path / "run-bad"), "--set",
            "data.split=train", "--no-progress")
    one_line_error(r, "train.txt", "line 1")
