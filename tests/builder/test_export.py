"""cma-build export on a real small render, each format read back by what its users read it with:
the ShapeNet-55 loader's indexing (re-implemented from its public source), open3d (PLY),
the transforms.json camera in its own axes (nerf), pycolmap (COLMAP text model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import index_rows, load, render, run_cli

N_POINTS = 8192  # cfgs/dataset_configs/ShapeNet-55.yaml of Point-BERT / Point-MAE / ReCon / ACT


@pytest.fixture(scope="session")
def ds8k(synth_tree, tmp_path_factory):
    """4 objects, normals, fused clouds of the ShapeNet-55 size."""
    out = tmp_path_factory.mktemp("export") / "ds"
    proc = render(synth_tree, out, "--limit", "4", "--normals", "--fused-points", str(N_POINTS), "--shard-size", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="session")
def objects(ds8k):
    return [(r, load(ds8k, r)) for r in index_rows(ds8k) if r["status"] == "done"]


def export(ds, fmt, out, *extra):
    proc = run_cli("cma-build", "export", str(ds), "--format", fmt, "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


# --- shapenet55 --------------------------------------------------------------------------
class ShapeNet55Loader:
    """The indexing of datasets/ShapeNet55Dataset.py (Point-BERT family), without torch."""

    def __init__(self, data_path, pc_path, subset, npoints=N_POINTS, sample_points_num=1024, whole=False):
        self.pc_path, self.sample_points_num = pc_path, sample_points_num
        lines = open(os.path.join(data_path, f"{subset}.txt")).readlines()
        if whole:
            lines = open(os.path.join(data_path, "test.txt")).readlines() + lines
        self.file_list = []
        for line in lines:
            line = line.strip()
            self.file_list.append({"taxonomy_id": line.split("-")[0], "model_id": line.split("-")[1].split(".")[0],
                                   "file_path": line})
        self.permutation = np.arange(npoints)

    def pc_norm(self, pc):
        pc = pc - np.mean(pc, axis=0)
        return pc / np.max(np.sqrt(np.sum(pc ** 2, axis=1)))

    def __getitem__(self, idx):
        sample = self.file_list[idx]
        data = np.load(os.path.join(self.pc_path, sample["file_path"])).astype(np.float32)
        np.random.shuffle(self.permutation)
        data = self.pc_norm(data[self.permutation[:self.sample_points_num]])
        return sample["taxonomy_id"], sample["model_id"], data

    def __len__(self):
        return len(self.file_list)


def test_shapenet55_is_read_by_the_loader(ds8k, objects, tmp_path):
    out = tmp_path / "ShapeNet55-34"
    export(ds8k, "shapenet55", out)
    by_key = {(r["synset_id"], r["model_id"]): (r, a) for r, a in objects}
    for r, a in objects:
        pts = np.load(out / "shapenet_pc" / f"{r['synset_id']}-{r['model_id']}.npy")
        assert pts.shape == (N_POINTS, 3) and pts.dtype == np.float32
        np.testing.assert_array_equal(pts, a["fused_points"][:N_POINTS])
    seen = set()
    for subset in ("train", "test"):
        loader = ShapeNet55Loader(out / "ShapeNet-55", out / "shapenet_pc", subset, whole=subset == "train")
        for i in range(len(loader)):
            tax, model, sample = loader[i]
            r, a = by_key[(tax, model)]
            assert r["split"] == subset or subset == "train"  # whole=True reads test.txt too
            assert sample.shape == (1024, 3) and np.isfinite(sample).all()
            assert np.isclose(np.linalg.norm(sample, axis=1).max(), 1.0, atol=1e-5)
            seen.add((tax, model))
    splits = {r["split"] for r, _ in objects}
    assert seen == {k for k, (r, _) in by_key.items() if r["split"] in ("train", "test")}
    listed = {s: (out / "ShapeNet-55" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(sum(listed.values(), [])) == sorted(f"{s}-{m}.npy" for s, m in by_key), splits


def test_shapenet55_points_option_and_refusals(ds8k, tmp_path):
    out = tmp_path / "e"
    export(ds8k, "shapenet55", out, "--points", "2048", "--limit", "1")
    (f,) = (out / "shapenet_pc").iterdir()
    assert np.load(f).shape == (2048, 3)
    proc = run_cli("cma-build", "export", str(ds8k), "--format", "shapenet55", "--out", str(out))  # other --points
    assert proc.returncode == 2 and "other options" in proc.stderr and "Traceback" not in proc.stderr
    fresh = tmp_path / "never"
    proc = run_cli("cma-build", "export", str(ds8k), "--format", "shapenet55", "--out", str(fresh), "--points", "9000")
    assert proc.returncode == 2 and "--fused-points 9000" in proc.stderr and not fresh.exists()
    proc = run_cli("cma-build", "export", str(ds8k), "--format", "ply", "--out", str(fresh), "--points", "10")
    assert proc.returncode == 2 and "applies to --format shapenet55" in proc.stderr and not fresh.exists()


# --- ply ---------------------------------------------------------------------------------
def test_ply_round_trips_through_open3d(ds8k, objects, tmp_path):
    import open3d as o3d

    export(ds8k, "ply", tmp_path / "p", "--per-view")
    for r, a in objects:
        folder = tmp_path / "p" / r["synset_id"] / r["model_id"]
        n = int(a["fused_point_count"])
        pcd = o3d.io.read_point_cloud(str(folder / "fused.ply"))
        np.testing.assert_array_equal(np.asarray(pcd.points), a["fused_points"][:n].astype(np.float64))
        o = a["fused_origin"][:n].astype(int)
        np.testing.assert_array_equal(np.rint(np.asarray(pcd.colors) * 255), a["rgb"][o[:, 0], o[:, 1], o[:, 2]])
        np.testing.assert_array_equal(np.asarray(pcd.normals),
                                      a["normal"][o[:, 0], o[:, 1], o[:, 2]].astype(np.float32).astype(np.float64))
        for k in range(len(a["view_points"])):
            m = int(a["view_point_count"][k])
            view = o3d.io.read_point_cloud(str(folder / f"view_{k:03d}.ply"))
            np.testing.assert_array_equal(np.asarray(view.points), a["view_points"][k, :m].astype(np.float64))
            pix = a["view_pixels"][k, :m].astype(int)
            np.testing.assert_array_equal(np.rint(np.asarray(view.colors) * 255), a["rgb"][k, pix[:, 0], pix[:, 1]])


# --- nerf --------------------------------------------------------------------------------
def project_opengl(points, c2w, fl_x, fl_y, cx, cy):
    """nerfstudio / instant-ngp pinhole: camera looks down -z, y up; pixel centers at +0.5, so the
    continuous coordinate of pixel (row v, column u)'s center is (u + 0.5, v + 0.5)."""
    w2c = np.linalg.inv(np.asarray(c2w))
    X = points.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -X[:, 2]
    return np.stack([fl_x * X[:, 0] / depth + cx, cy - fl_y * X[:, 1] / depth], axis=1), depth  # (x, y) = (u, v)


def test_nerf_cameras_project_onto_stored_pixels(ds8k, objects, tmp_path):
    export(ds8k, "nerf", tmp_path / "n")
    for r, a in objects:
        folder = tmp_path / "n" / r["synset_id"] / r["model_id"]
        meta = json.loads((folder / "transforms.json").read_text())
        scale = meta["integer_depth_scale"]
        assert meta["w"] == a["rgb"].shape[2] and meta["h"] == a["rgb"].shape[1]
        for k, frame in enumerate(meta["frames"]):
            m = int(a["view_point_count"][k])
            xy, depth = project_opengl(a["view_points"][k, :m], frame["transform_matrix"], meta["fl_x"], meta["fl_y"],
                                       meta["cx"], meta["cy"])
            centers = a["view_pixels"][k, :m][:, ::-1] + 0.5  # (v, u) -> (x, y) of the pixel center
            assert np.abs(xy - centers).max() < 1e-3
            vis = a["fused_visible"][:, k]
            fxy, _ = project_opengl(a["fused_points"][vis], frame["transform_matrix"], meta["fl_x"], meta["fl_y"],
                                    meta["cx"], meta["cy"])
            assert np.abs(fxy - (a["fused_pixels"][vis, k][:, ::-1] + 0.5)).max() < 1e-3
            rgba = np.asarray(Image.open(folder / frame["file_path"]))
            np.testing.assert_array_equal(rgba[..., :3], a["rgb"][k])
            np.testing.assert_array_equal(rgba[..., 3], np.where(a["mask"][k], 255, 0))
            png = Image.open(folder / frame["depth_file_path"])
            raw = np.asarray(png).astype(np.float64)
            assert png.mode.startswith("I") and raw.max() > 255  # really 16 bits
            assert frame["depth_path"] == frame["depth_file_path"]
            mask = a["mask"][k]
            assert np.abs(raw[mask] * scale - a["depth"][k][mask]).max() <= scale / 2 * (1 + 1e-6)
            assert (raw[~mask] == 0).all()
            # the stored z-depth is the projection's depth at the view points' pixels
            v, u = a["view_pixels"][k, :m].T
            assert np.abs(raw[v, u] * scale - depth).max() <= scale / 2 + 1e-5


# --- colmap ------------------------------------------------------------------------------
def test_colmap_model_reads_in_pycolmap(ds8k, objects, tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    export(ds8k, "colmap", tmp_path / "c")
    for r, a in objects:
        folder = tmp_path / "c" / r["synset_id"] / r["model_id"]
        rec = pycolmap.Reconstruction(str(folder / "sparse" / "0"))
        views, n = len(a["K"]), int(a["fused_point_count"])
        assert rec.num_images() == views and rec.num_points3D() == n
        for k in range(views):
            image = rec.images[k + 1]
            cam = rec.cameras[image.camera_id]
            np.testing.assert_allclose(image.cam_from_world().matrix(), a["world_to_cam"][k][:3], atol=1e-12)
            K = a["K"][k].copy()
            K[:2, 2] += 0.5
            np.testing.assert_allclose(cam.calibration_matrix(), K, atol=1e-12)
            assert (folder / "images" / image.name).is_file()
            vis = np.flatnonzero(a["fused_visible"][:n, k])
            assert image.num_points3D == len(vis)
            for j, p in enumerate(vis[:: max(1, len(vis) // 50)]):
                pt = rec.points3D[int(p) + 1]
                np.testing.assert_array_equal(pt.xyz, a["fused_points"][p].astype(np.float64))
                xy = cam.img_from_cam(image.cam_from_world() * pt.xyz)
                v, u = a["fused_pixels"][p, k]
                assert np.abs(xy - [u + 0.5, v + 0.5]).max() < 1e-3
        for p in range(0, n, 97):
            assert rec.points3D[p + 1].track.length() == int(a["fused_visible"][p].sum())


# --- resuming, killing, bad input --------------------------------------------------------
def test_killed_export_resumes(ds8k, objects, tmp_path):
    out = tmp_path / "k"
    victim = objects[2][0]["model_id"]
    env = dict(os.environ, CMA_FAULTS=f"kill-in-export:{victim}")
    cmd = [os.path.join(os.path.dirname(sys.executable), "cma-build"), "export", str(ds8k), "--format", "nerf",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    done = sorted(p.parent.name + "/" + p.name for p in out.glob("[0-9]*/*") if p.is_dir())
    assert victim not in {d.split("/")[1] for d in done} and len(done) == 2  # two committed, the third not
    assert any((out / ".staging").iterdir())  # the half-written object is only in staging
    mtimes = {d: (out / d / "transforms.json").stat().st_mtime_ns for d in done}
    proc = export(ds8k, "nerf", out)
    assert "Exported 2 objects as nerf (2 already there) of 4" in proc.stdout
    assert not (out / ".staging").exists()
    assert all((out / d / "transforms.json").stat().st_mtime_ns == t for d, t in mtimes.items())
    assert len([p for p in out.glob("*/*/transforms.json")]) == 4


def test_export_refuses_bad_output_before_work(ds8k, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args, expect in [
        (["--format", "ply", "--out", str(foreign)], "not a cma-build export"),
        (["--format", "ply", "--out", str(a_file)], "is a file"),
        (["--format", "ply", "--out", "/proc/x"], "cannot write there"),
        (["--format", "ply", "--out", str(tmp_path / "o"), "--split", "bogus"], "unknown split"),
        (["--format", "ply", "--out", str(tmp_path / "o"), "--categories", "notacategory"], "unknown category"),
        (["--format", "nerf", "--out", str(tmp_path / "o"), "--depth-scale", "0"], "--depth-scale must be a finite"),
        (["--format", "nerf", "--out", str(tmp_path / "o"), "--depth-scale", "inf"], "--depth-scale must be a finite"),
        (["--format", "shapenet55", "--out", str(tmp_path / "o"), "--points", "0"], "--points must be at least 1"),
        (["--format", "ply", "--out", str(ds8k / "shards" / "x")], "inside the dataset"),
        (["--format", "ply", "--out", str(tmp_path / "o"), "--split", "val,test", "--categories", "airplane"],
         "no objects selected (the dataset has"),
        (["--format", "ply", "--out", str(tmp_path / "o"), "--limit", "0"], "--limit must be at least 1"),
    ]:
        proc = run_cli("cma-build", "export", str(ds8k), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
    proc = run_cli("cma-build", "export", str(tmp_path), "--format", "ply", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "not a cma-build dataset" in proc.stderr
    assert (foreign / "keep.txt").read_text() == "mine" and sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "o").exists()


def test_nerf_depth_that_does_not_fit_fails_that_object(ds8k, tmp_path):
    out = tmp_path / "n"
    for scale, message in (("1e-5", "does not fit 16 bits"), ("0.05", "coarser than 1% of the nearest depth")):
        proc = run_cli("cma-build", "export", str(ds8k), "--format", "nerf", "--out", str(out), "--depth-scale", scale,
                       "--limit", "1")
        assert proc.returncode == 1 and message in proc.stderr and "Exported 0 objects" in proc.stdout, proc.stderr
        assert not list(out.glob("*/*"))
    export(ds8k, "nerf", out, "--limit", "1")  # nothing was exported, so the folder takes the new options


def test_second_export_into_the_same_folder_is_refused(ds8k, tmp_path):
    import fcntl

    out = tmp_path / "busy"
    export(ds8k, "ply", out, "--limit", "1")
    with open(out / ".lock", "a+") as fh:  # what a running export holds
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run_cli("cma-build", "export", str(ds8k), "--format", "ply", "--out", str(out))
    assert proc.returncode == 2 and "another cma-build export is writing here" in proc.stderr
    assert len(list(out.glob("*/*.ply"))) == 1
