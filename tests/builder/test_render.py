"""cma-build render with real Blender renders of small scenes, checked against independent geometry
(open3d ray casting and point-to-mesh distances) and plain zarr reads."""

import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import zarr

from cma_builder.geometry.cameras import project
from cma_builder.format.writer import ARRAYS
from cma_builder.geometry.visibility import backproject
from cma_builder.render.settings import FORMAT_VERSION
from conftest import BIN, REPO, SMALL, index_rows, load, render, run_cli

o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)


def raycaster(obj_path: str):
    mesh = o3d.t.geometry.TriangleMesh.from_legacy(o3d.io.read_triangle_mesh(obj_path, enable_post_processing=False))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(mesh)
    return scene


def pixel_rays(K, w2c, H, W):
    """Rays through every pixel center, direction scaled so that t is the planar depth."""
    v, u = np.mgrid[0:H, 0:W]
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((H, W))], axis=-1)
    d_world = d_cam @ w2c[:3, :3]
    origin = -w2c[:3, :3].T @ w2c[:3, 3]
    return np.concatenate([np.broadcast_to(origin, d_world.shape), d_world], axis=-1).astype(np.float32)


def test_dataset_layout_index_and_attributes(rendered):
    rows = index_rows(rendered)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    assert len({r["synset_id"] for r in rows}) == 8  # --limit is round-robin across categories
    shards = sorted(p.name for p in (rendered / "shards").iterdir() if p.is_dir())
    assert len(shards) == 3 and sorted({r["shard"] for r in rows}) == shards
    attrs = zarr.open_group(rendered, mode="r").attrs["cma-dataset"]
    assert attrs["settings"]["resolution"] == 64 and attrs["conventions"]["camera_frame"].startswith("OpenCV")
    assert set(attrs["arrays"]) == set(ARRAYS)  # normals requested, so every array is present
    for r in rows:
        group = zarr.open_group(rendered / "shards" / r["shard"], mode="r")
        i = int(r["row"])
        for name, spec in attrs["arrays"].items():
            arr = group[name]
            assert list(arr.shape[1:]) == spec["example_shape"][1:], name
            if spec["chunk"] == "one view of one object":
                assert arr.chunks == (1, 1) + arr.shape[2:], name  # one view = one chunk
            elif spec["dtype"] != "string":
                assert arr.chunks == (1,) + arr.shape[1:], name
        assert group["model_id"][i] == r["model_id"] and group["synset_id"][i] == r["synset_id"]
        assert int(group["label"][i]) == int(r["label"]) == attrs["label_names"].index(r["synset_id"])
        assert int(group["split"][i]) == attrs["split_codes"][r["split"]]


def test_docs_snippet_reads_an_object_with_plain_zarr(rendered):
    """The reading example in docs/DATA_FORMAT.md runs as written."""
    text = (REPO / "docs" / "DATA_FORMAT.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1).replace('"DATASET"', repr(str(rendered)))
    scope: dict = {}
    exec(compile(code, "DATA_FORMAT.md", "exec"), scope)
    assert scope["error_px"] < 1e-3


def test_depth_and_mask_match_an_independent_ray_caster(rendered):
    transparent_pixels = 0
    for r in index_rows(rendered):
        a = load(rendered, r)
        scene = raycaster(r["obj_path"])
        mtl = Path(r["obj_path"]).with_suffix(".mtl").read_text()
        for k in range(4):
            H, W = a["depth"].shape[1:]
            hit = scene.cast_rays(o3d.core.Tensor(pixel_rays(a["K"][k], a["world_to_cam"][k], H, W)))
            t = hit["t_hit"].numpy()
            ours = a["mask"][k]
            theirs = np.isfinite(t)
            iou = (ours & theirs).sum() / (ours | theirs).sum()
            assert iou >= 0.995, (r["category"], k, iou)
            both = ours & theirs
            err = np.abs(a["depth"][k][both] - t[both])
            assert np.percentile(err, 99) < 1e-4 and err.max() < 1e-2, (r["category"], k, err.max())
            assert (a["depth"][k][~ours] == 0).all()
            if "d 0.3" in mtl:
                transparent_pixels += ours.sum()
            assert_normals_face_the_camera(a, k)
    assert transparent_pixels > 0  # glass (d 0.3) is in depth and mask like any surface


def assert_normals_face_the_camera(a: dict, k: int, at_least: float = 0.95) -> None:
    pts, px = backproject(a["depth"][k], a["mask"][k], a["K"][k], a["world_to_cam"][k])
    n = a["normal"][k][px[:, 0], px[:, 1]].astype(np.float64)
    assert np.allclose(np.linalg.norm(n, axis=-1), 1, atol=2e-3)
    center = -a["world_to_cam"][k][:3, :3].T @ a["world_to_cam"][k][:3, 3]
    # Smooth shading normals at silhouettes can be tangential; at 64 px those are a few percent.
    facing = (np.einsum("ij,ij->i", n, pts - center) < 0).mean()
    assert facing >= at_least, (k, facing)


def test_points_lie_on_the_source_mesh(rendered):
    for r in index_rows(rendered):
        a = load(rendered, r)
        scene = raycaster(r["obj_path"])
        diag = float(a["diagonal"])
        for name in ("fused_points", "view_points"):
            pts = a[name].reshape(-1, 3)
            d = scene.compute_distance(o3d.core.Tensor(pts.astype(np.float32))).numpy()
            assert np.percentile(d, 99) < 1e-3 * diag, (r["category"], name, np.percentile(d, 99))


def test_point_pixel_maps_reproject_and_visibility_is_exact(rendered):
    settings = zarr.open_group(rendered, mode="r").attrs["cma-dataset"]["settings"]
    agree, total, depth_test_agree = 0, 0, 0
    for r in index_rows(rendered):
        a = load(rendered, r)
        K, w2c, depth, mask = a["K"], a["world_to_cam"], a["depth"], a["mask"]
        for k in range(4):
            n = int(a["view_point_count"][k])
            assert n == min(256, int(mask[k].sum())) == min(256, int(a["view_foreground"][k]))
            pix, z = project(a["view_points"][k].astype(np.float64), K[k], w2c[k])
            stored = a["view_pixels"][k].astype(np.float64)
            assert np.abs(pix - stored).max() < 0.5  # stored pixels reproject within half a pixel
            v, u = a["view_pixels"][k].T
            assert mask[k][v, u].all() and np.allclose(z, depth[k][v, u], rtol=1e-4)
        pts = a["fused_points"].astype(np.float64)
        tol = settings["visibility_tolerance"] * float(a["diagonal"])
        scene = raycaster(r["obj_path"])
        for k in range(4):
            pix, z = project(pts, K[k], w2c[k])
            assert np.abs(pix - a["fused_pixels"][:, k]).max() < 1e-3
            inside = (z > 0) & (pix[:, 0] >= -0.5) & (pix[:, 0] < 63.5) & (pix[:, 1] >= -0.5) & (pix[:, 1] < 63.5)
            assert not (a["fused_visible"][:, k] & ~inside).any()  # never visible outside the image
            # Against geometry read independently (open3d from the OBJ): visible iff nothing lies
            # between the camera and the point (up to the tolerance).
            origin = -w2c[k][:3, :3].T @ w2c[k][:3, 3]
            dirs = pts - origin
            rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=1).astype(np.float32)
            t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
            geometric = inside & ((1 - t) * np.linalg.norm(dirs, axis=1) <= tol)
            agree += (geometric == a["fused_visible"][:, k]).sum()
            total += len(pts)
            rule = np.zeros(len(pts), bool)  # the 4-pixel depth test of format 2, for comparison
            for dv in (0, 1):
                for du in (0, 1):
                    ri, ci = np.floor(pix[:, 0]).astype(int) + dv, np.floor(pix[:, 1]).astype(int) + du
                    ok = (ri >= 0) & (ri < 64) & (ci >= 0) & (ci < 64) & (z > 0)
                    ri, ci = np.where(ok, ri, 0), np.where(ok, ci, 0)
                    rule |= ok & mask[k][ri, ci] & (z - depth[k][ri, ci] <= 0.01 * float(a["diagonal"]))
            depth_test_agree += (geometric == rule).sum()
        # Each fused point is the back-projection of the pixel it records as its origin.
        view, v, u = a["fused_origin"][:, 0], a["fused_origin"][:, 1], a["fused_origin"][:, 2]
        for k in range(4):
            sel = view == k
            pix, z = project(pts[sel], K[k], w2c[k])
            assert np.abs(pix - np.stack([v[sel], u[sel]], axis=1)).max() < 0.01
    assert agree / total > 0.999, agree / total  # exact: float32 decides only at edges and the tolerance
    assert depth_test_agree / total < agree / total  # what the old rule missed at 64 px


def write_marker_tree(root: Path, centers: np.ndarray, radius: float) -> Path:
    """A ShapeNet-layout tree with one model made of small spheres at known points."""
    models = root / "03001627" / "markers" / "models"
    models.mkdir(parents=True)
    lines, faces, n = ["mtllib model_normalized.mtl"], [], 0
    th, ph = np.meshgrid(np.linspace(0, np.pi, 10), np.linspace(0, 2 * np.pi, 17), indexing="ij")
    ring = np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], axis=-1)
    for c in centers:
        for p in (c + radius * ring).reshape(-1, 3):
            lines.append("v %.6f %.6f %.6f" % tuple(p))
        for i in range(9):
            for j in range(16):
                a, b = n + i * 17 + j + 1, n + (i + 1) * 17 + j + 1
                faces += [f"f {a} {b} {b + 1}", f"f {a} {b + 1} {a + 1}"]
        n += 170
    lines += ["usemtl red"] + faces
    (models / "model_normalized.obj").write_text("\n".join(lines) + "\n")
    (models / "model_normalized.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    (models / "model_normalized.json").write_text("{}")
    return root


def test_a_3d_marker_projects_onto_the_pixel_where_it_renders(tmp_path):
    centers = np.array([[0.3, 0.0, 0.0], [-0.25, 0.2, 0.1], [0.0, -0.3, 0.2], [0.05, 0.25, -0.25]])
    tree = write_marker_tree(tmp_path / "tree", centers, 0.03)
    out = tmp_path / "ds"
    proc = render(tree, out, "--resolution", "128", "--elevations", "25")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a = load(out, index_rows(out)[0])
    checked = 0
    for k in range(4):
        pix, _ = project(centers, a["K"][k], a["world_to_cam"][k])
        for m, (v, u) in enumerate(pix):
            others = np.delete(pix, m, axis=0)
            if np.min(np.linalg.norm(others - [v, u], axis=1)) < 20:
                continue  # two markers overlap in this view
            r0, c0 = int(round(v)), int(round(u))
            win = a["mask"][k][r0 - 8:r0 + 9, c0 - 8:c0 + 9]
            rr, cc = np.nonzero(win)
            centroid = np.array([rr.mean() + r0 - 8, cc.mean() + c0 - 8])
            assert np.linalg.norm(centroid - [v, u]) < 0.5, (k, m, centroid, (v, u))
            rgb = a["rgb"][k][r0, c0].astype(int)
            assert rgb[0] > rgb[1] + 40  # the red marker, not the white background
            checked += 1
    assert checked >= 10


def test_resume_skips_done_objects(synth_tree, tmp_path):
    out = tmp_path / "ds"
    assert render(synth_tree, out, "--limit", "3").returncode == 0
    first = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir() if p.is_dir()}
    proc = render(synth_tree, out, "--limit", "5")
    assert proc.returncode == 0 and "2 rendered" in proc.stdout and "3 already done" in proc.stdout
    for name, mtime in first.items():
        assert (out / "shards" / name).stat().st_mtime_ns == mtime  # untouched
    proc = render(synth_tree, out, "--limit", "5")
    assert "0 rendered" in proc.stdout and "5 already done" in proc.stdout
    rows = index_rows(out)
    assert len(rows) == 5 and len({(r["synset_id"], r["model_id"]) for r in rows}) == 5


def test_broken_objects_are_recorded_and_the_rest_finish(tree_copy, tmp_path):
    ids = {sid: sorted(p.name for p in (tree_copy / sid).iterdir()) for sid in ("02691156", "03001627", "04256520",
                                                                              "03797390")}
    truncated = tree_copy / "02691156" / ids["02691156"][0] / "models" / "model_normalized.obj"
    truncated.write_bytes(truncated.read_bytes()[:2000])
    degenerate = tree_copy / "03001627" / ids["03001627"][0] / "models" / "model_normalized.obj"
    degenerate.write_text("v 0.1 0.1 0.1\nv 0.1 0.1 0.1\nv 0.1 0.1 0.1\nf 1 2 3\n")
    crasher, hanger = ids["04256520"][0], ids["03797390"][0]
    out = tmp_path / "ds"
    proc = render(tree_copy, out, "--limit", "12", "--timeout", "20",
                  env={"CMA_FAULTS": f"segfault:{crasher},hang:{hanger}"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["model_id"]: r for r in index_rows(out)}
    assert len(rows) == 12
    assert rows[ids["02691156"][0]]["status"] == "skipped" and "obj_truncated" in rows[ids["02691156"][0]]["error"]
    assert rows[ids["03001627"][0]]["status"] == "failed" and "single point" in rows[ids["03001627"][0]]["error"]
    assert rows[crasher]["status"] == "failed" and "SIGSEGV" in rows[crasher]["error"]
    assert rows[hanger]["status"] == "failed" and "timed out" in rows[hanger]["error"]
    broken = {ids["02691156"][0], ids["03001627"][0], crasher, hanger}
    assert all(r["status"] == "done" for mid, r in rows.items() if mid not in broken)
    assert "8 rendered, 3 failed, 1 skipped" in proc.stdout
    # The worker's traceback of an object that raised reaches the run log (index.csv keeps its columns).
    logged = [json.loads(line) for f in (out / "log").glob("*.jsonl") for line in f.read_text().splitlines()]
    raised = [r for r in logged if r["model_id"] == ids["03001627"][0] and r["status"] == "failed"]
    assert raised and raised[-1]["traceback"].startswith("Traceback") and "single point" in raised[-1]["traceback"]
    assert "traceback" not in rows[ids["03001627"][0]]
    # stats groups the failures by reason; validate checks the rendered ones and ignores the rest.
    stats = run_cli("cma-build", "stats", str(out)).stdout
    for reason in ("failed: worker died with signal SIGSEGV while rendering", "failed: timed out after 20 s",
                   "skipped: scan: obj_truncated"):
        assert re.search(rf"^ +1  {re.escape(reason)}  \(e\.g\. ", stats, re.M), (reason, stats)
    proc = run_cli("cma-build", "validate", str(out), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 0 and "Validated 8 of 8 done objects" in proc.stdout, proc.stdout
    # Without the faults, --retry-failed renders the crashed and hung objects; the rest stay.
    proc = render(tree_copy, out, "--limit", "12", "--retry-failed")
    rows = {r["model_id"]: r for r in index_rows(out)}
    assert rows[crasher]["status"] == rows[hanger]["status"] == "done"
    assert rows[ids["02691156"][0]]["status"] == "skipped" and rows[ids["03001627"][0]]["status"] == "failed"


def test_missing_texture_falls_back_to_gray_never_magenta(tree_copy, tmp_path):
    textured = sorted(tree_copy.glob("*/*/images/texture0.jpg"))[0]
    model_dir = textured.parents[1]
    for img in (model_dir / "images").iterdir():
        img.unlink()
    keep = {model_dir.parent.name}
    for sid in [p for p in tree_copy.iterdir() if p.is_dir()]:
        if sid.name not in keep:
            shutil.rmtree(sid)
    for other in model_dir.parent.iterdir():
        if other != model_dir:
            shutil.rmtree(other)
    out = tmp_path / "ds"
    proc = render(tree_copy, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = index_rows(out)[0]
    assert row["status"] == "done" and "texture_fallback" in row["warnings"] and "texture_missing" in row["warnings"]
    rgb = load(out, row)["rgb"].astype(int)
    magenta = (rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] > 180)
    assert magenta.sum() == 0


def test_interrupted_shard_write_leaves_no_partial_shard(synth_tree, tmp_path):
    out = tmp_path / "ds"
    proc = render(synth_tree, out, "--limit", "6", "--shard-size", "2", env={"CMA_FAULTS": "kill-in-shard-write:2"})
    assert proc.returncode == -signal.SIGKILL  # the driver really died mid-write
    committed = [p for p in (out / "shards").iterdir() if p.is_dir()]
    assert len(committed) == 1  # the first shard; the second never became visible
    group = zarr.open_group(committed[0], mode="r")
    assert all(group[name].shape[0] == 2 for name in group.array_keys())
    assert any((out / ".staging").iterdir())  # the half-written one stayed out of sight
    proc = render(synth_tree, out, "--limit", "6", "--shard-size", "2")
    assert proc.returncode == 0 and "4 rendered" in proc.stdout and "2 already done" in proc.stdout
    rows = index_rows(out)
    keys = [(r["synset_id"], r["model_id"]) for r in rows]
    assert len(keys) == 6 == len(set(keys)) and {r["status"] for r in rows} == {"done"}
    in_shards = []
    for shard in (out / "shards").iterdir():
        if shard.is_dir():
            in_shards += list(zarr.open_group(shard, mode="r")["model_id"][:])
    assert sorted(in_shards) == sorted(k[1] for k in keys)  # every object exactly once
    assert not any(f.is_file() for f in (out / ".staging").rglob("*"))  # the half-written shard is gone


def test_settings_guard_force_dry_run_and_config(synth_tree, tmp_path):
    out = tmp_path / "ds"
    proc = render(synth_tree, out, "--limit", "2", "--dry-run")
    assert proc.returncode == 0 and "2 to render" in proc.stdout and not out.exists()
    assert render(synth_tree, out, "--limit", "2").returncode == 0
    proc = render(synth_tree, out, "--limit", "2", "--samples", "5")
    assert proc.returncode == 2 and "samples: 4 -> 5" in proc.stderr and "--force" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = render(synth_tree, out, "--limit", "2", "--samples", "5", "--force")
    assert proc.returncode == 0 and "2 rendered" in proc.stdout
    config = tmp_path / "render.yaml"
    config.write_text("resolution: 32\nviews: 2\nelevations: [10]\nlimit: 1\n")
    out2 = tmp_path / "ds2"
    proc = run_cli("cma-build", "render", "--config", str(config), "--shapenet", str(synth_tree), "--out", str(out2),
                   "--samples", "2", "--workers", "1", "--view-points", "16", "--fused-points", "32")
    assert proc.returncode == 0, proc.stderr
    assert zarr.open_group(out2, mode="r").attrs["cma-dataset"]["settings"]["resolution"] == 32
    a = load(out2, index_rows(out2)[0])
    assert a["rgb"].shape == (2, 32, 32, 3)
    config.write_text("resolutoin: 32\n")
    proc = run_cli("cma-build", "render", "--config", str(config), "--shapenet", str(synth_tree), "--out", str(out2))
    assert proc.returncode == 2 and "unknown key 'resolutoin'" in proc.stderr


def test_bad_render_input_is_one_line(synth_tree, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("x")
    for args, expected in [
        (["--shapenet", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "no such folder"),
        (["--shapenet", str(synth_tree), "--out", str(tmp_path / "afile")], "is a file"),
        (["--shapenet", str(synth_tree), "--out", str(tmp_path / "notes")], "not a cma-build dataset"),
        (["--shapenet", str(synth_tree), "--out", str(tmp_path / "o"), "--viewpoints", "file"], "--viewpoint-file"),
        (["--shapenet", str(synth_tree), "--out", str(tmp_path / "o"), "--background", "plaid"], "background"),
        (["--shapenet", str(synth_tree), "--out", str(tmp_path / "o"), "--views", "5", "--elevations", "0,30"],
         "split evenly"),
    ]:
        proc = run_cli("cma-build", "render", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "x"


def test_file_viewpoints_are_used_verbatim(synth_tree, tmp_path):
    from cma_builder.geometry.cameras import look_at

    m = look_at([0.2, 0.9, -1.6], [0.0, 0.0, 0.0])
    poses = tmp_path / "poses.json"
    poses.write_text(json.dumps([{"world_to_cam": m.tolist()}, {"azimuth": 180, "elevation": 0}]))
    out = tmp_path / "ds"
    proc = render(synth_tree, out, "--limit", "1", "--viewpoints", "file", "--viewpoint-file", str(poses))
    assert proc.returncode == 0, proc.stderr
    a = load(out, index_rows(out)[0])
    assert a["world_to_cam"].shape == (2, 4, 4) and np.allclose(a["world_to_cam"][0], m)


@pytest.mark.real_shapenet
def test_genuine_shapenet_models_render_exactly(real_shapenet, tmp_path):
    """Real ShapeNetCore.v2 quirks (flipped normals, inconsistent winding, transparency,
    PNG-in-.jpg textures) rendered in place from ../shared; never copied."""
    out = tmp_path / "ds"
    proc = render(real_shapenet, out, "--categories", "bench,mug,chair", "--limit", "3", "--normals")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = index_rows(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"done"}
    for r in rows:
        a = load(out, r)
        scene = raycaster(r["obj_path"])
        d = scene.compute_distance(o3d.core.Tensor(a["fused_points"].astype(np.float32))).numpy()
        assert np.percentile(d, 99) < 1e-3 * float(a["diagonal"]), (r["category"], np.percentile(d, 99))
        for k in range(4):
            H, W = a["depth"].shape[1:]
            t = scene.cast_rays(o3d.core.Tensor(pixel_rays(a["K"][k], a["world_to_cam"][k], H, W)))["t_hit"].numpy()
            ours, theirs = a["mask"][k], np.isfinite(t)
            assert (ours & theirs).sum() / (ours | theirs).sum() >= 0.99
            assert_normals_face_the_camera(a, k, at_least=0.9)


def test_split_selection_and_worker_recycling(synth_tree, tmp_path):
    from cma_builder.source.splits import SplitSpec

    spec = SplitSpec.bundled()
    models = [p.name for p in synth_tree.glob("*/*") if p.is_dir()]
    wanted = sorted(m for m in models if spec.assign(m) in ("val", "test"))
    out = tmp_path / "ds"
    proc = render(synth_tree, out, "--split", "val,test", "--recycle-after", "1")
    assert proc.returncode == 0, proc.stderr
    rows = index_rows(out)
    assert sorted(r["model_id"] for r in rows) == wanted and {r["split"] for r in rows} <= {"val", "test"}
    assert len({r["worker"] for r in rows}) == len(rows)  # a fresh worker process for every object
    proc = run_cli("cma-build", "render", "--shapenet", str(synth_tree), "--out", str(out), "--split", "tarin")
    assert proc.returncode == 2 and "unknown split 'tarin'" in proc.stderr


def test_one_writing_run_per_dataset(synth_tree, tmp_path):
    import fcntl

    out = tmp_path / "ds"
    assert render(synth_tree, out, "--limit", "1").returncode == 0
    with open(out / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as if another run were writing
        proc = render(synth_tree, out, "--limit", "2")
    assert proc.returncode == 2 and "another cma-build render is writing" in proc.stderr
    assert render(synth_tree, out, "--limit", "2").returncode == 0  # free again


def test_ctrl_c_keeps_finished_objects_and_resume_completes(synth_tree, tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "ds"
    hang = sorted(p.name for p in (synth_tree / "04379243").iterdir())[0]  # a table: dispatched late
    cmd = [str(Path(sys.executable).parent / "cma-build"), "render", "--shapenet", str(synth_tree), "--out", str(out),
           *SMALL, "--limit", "16", "--shard-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, CMA_FAULTS=f"hang:{hang}"))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "index.csv").is_file():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Interrupted" in stdout and "Run the same command again to resume" in stdout
    rows = index_rows(out)
    assert rows and {r["status"] for r in rows} == {"done"}  # nothing in flight was called failed
    proc = render(synth_tree, out, "--limit", "16", "--shard-size", "2")
    assert proc.returncode == 0, proc.stderr
    rows = index_rows(out)
    assert len(rows) == 16 == len({r["model_id"] for r in rows}) and {r["status"] for r in rows} == {"done"}


def test_a_worker_dying_between_objects_costs_no_object(synth_tree, tmp_path):
    first = sorted(p.name for p in (synth_tree / "02691156").iterdir())[0]  # dispatched first
    out = tmp_path / "ds"
    proc = render(synth_tree, out, "--limit", "8", "--workers", "1", env={"CMA_FAULTS": f"exit-idle:{first}"})
    assert proc.returncode == 0 and "8 rendered, 0 failed" in proc.stdout, proc.stdout + proc.stderr
    assert len({r["worker"] for r in index_rows(out)}) == 2  # the dead worker was replaced


def test_index_manifest_and_report_follow_the_umask_like_the_shards(synth_tree, tmp_path):
    """Files the toolkit writes atomically get 0666 less the umask, as zarr's shard files do
    (not tempfile's private 0600)."""
    import stat
    import subprocess

    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        out, manifest = tmp_path / f"ds-{umask:o}", tmp_path / f"manifest-{umask:o}.csv"
        cmds = [[str(BIN / "cma-build"), "scan", "--shapenet", str(synth_tree), "--out", str(manifest), "--limit", "1"],
                [str(BIN / "cma-build"), "render", "--shapenet", str(synth_tree), "--out", str(out), *SMALL,
                 "--limit", "1"],
                [str(BIN / "cma-build"), "validate", str(out)]]
        for cmd in cmds:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(umask))
            assert proc.returncode == 0, proc.stdout + proc.stderr
        shard_files = [p for p in (out / "shards").rglob("*") if p.is_file()]
        assert shard_files and {stat.S_IMODE(p.stat().st_mode) for p in shard_files} == {mode}
        for path in (out / "index.csv", manifest, out / "validation.json"):
            assert stat.S_IMODE(path.stat().st_mode) == mode, (path.name, oct(path.stat().st_mode), oct(mode))


def test_a_dataset_of_an_older_pipeline_says_so(rendered, synth_tree, tmp_path):
    """Rendering into it names the format change (not an empty list of differences); validate
    explains why the checks of the newer pipeline may fail on it."""
    out = tmp_path / "old"
    shutil.copytree(rendered, out)
    meta = json.loads((out / "zarr.json").read_text())
    attrs = meta["attributes"]["cma-dataset"]
    attrs["settings"]["format_version"] -= 1
    attrs["settings_hash"] = "0" * 16
    (out / "zarr.json").write_text(json.dumps(meta))
    settings = ["--limit", "8", "--normals", "--shard-size", "3"]
    old, new = FORMAT_VERSION - 1, FORMAT_VERSION
    for extra in ([], ["--dry-run"]):
        proc = render(synth_tree, out, *settings, *extra)
        assert proc.returncode == 2 and f"(format_version: {old} -> {new})" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("cma-build", "validate", str(out), "--report", str(tmp_path / "r.json"))
    assert f"Note: rendered by an older cma-build (pipeline format {old}, now {new})" in proc.stdout
    assert "older cma-build" in json.loads((tmp_path / "r.json").read_text())["note"]
