"""Every real asset of ../shared/data/assets-real rendered by Blender and checked against the
source files read without Blender (validate --source), plus Objaverse, ModelNet and folder
layouts built in the test from those files, and crafted broken files. Skipped when the assets
are absent (they are never copied into the repository)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cma_builder.checks.source_mesh import read_source_mesh
from cma_builder.format import DatasetReader
from cma_builder.geometry.raycast import MeshRaycaster
from cma_builder.source.base import apply_transform
from conftest import SMALL, index_rows, load, run_cli
from test_gltffile import draco_glb, glb_bytes
from test_sources import link, modelnet_layout, objaverse_layout

# What the faulty files are refused for (a code of the manifest, found before Blender starts).
FAULTY = {
    "assimp-OutOfMemory.off": "off_truncated", "assimp-empty.off": "file_empty", "assimp-invalid.off": "off_",
    "empty.obj": "obj_empty", "empty_nodes.glb": "no_triangles", "notenoughindices.obj": "obj_truncated",
    "obj_points.obj": "obj_empty", "ply_empty_header.ply": "ply_no_vertices",
}
# Real assets that render but fail one check of validate --source, and why (the only ones).
KNOWN_FAILURES = {
    # a flat square (a glTF triangle strip in the z = 0 plane): the ring's azimuth 90 and 270 views see it edge-on
    "Mesh_PrimitiveMode_04.gltf": {"images.rgb_blank"},
    # CAD parts whose faces meet in open edges: a few camera rays pass exactly through an edge, where a ray
    # caster of Blender's float32 vertices and one of the file's (trimesh, float64 transforms) disagree
    "pins.glb": {"geometry.visibility"},
}


def render_source(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("cma-build", "render", "--source", str(src), "--out", str(out), *SMALL, "--timeout", "120", *extra)


def validate_source(ds: Path, src: Path, *extra: str) -> dict:
    proc = run_cli("cma-build", "validate", str(ds), "--source", str(src), "--report", str(ds.parent / "report.json"),
                   *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads((ds.parent / "report.json").read_text())


def by_file(ds: Path) -> dict[str, dict]:
    return {Path(r["obj_path"]).name: r for r in index_rows(ds)}


@pytest.fixture(scope="module")
def assets_dataset(real_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("assets") / "ds"
    proc = render_source(real_assets, out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return out, proc.stdout, validate_source(out, real_assets)


def test_every_real_asset_renders_and_validates_or_fails_for_a_named_reason(assets_dataset):
    ds, stdout, report = assets_dataset
    rows = by_file(ds)
    assert len(rows) == 45
    for name, code in FAULTY.items():
        assert rows[name]["status"] == "skipped" and rows[name]["error"].startswith(f"scan: {code}"), rows[name]
        assert name.split(".")[0] in stdout  # the summary names each
    done = {n for n, r in rows.items() if r["status"] == "done"}
    assert done == set(rows) - set(FAULTY)  # every real asset renders; the run went on past the faulty ones
    assert report["objects_checked"] == len(done) and report["geometry_checked"]
    failed: dict[str, set] = {}
    for f in report["failures"]:
        failed.setdefault(Path(rows_by_key(rows)[f["object"]]["obj_path"]).name, set()).add(f["check"])
    assert failed == {k: v for k, v in KNOWN_FAILURES.items() if k in failed}, failed
    checks = report["checks"]
    assert checks["geometry.point_to_mesh"]["count"] == len(done) and checks["geometry.point_to_mesh"]["p99"] <= 1e-4
    assert checks["geometry.visibility"]["mean"] >= 0.995  # of (point, view) pairs, over every asset
    assert checks["geometry.raycast_iou"]["failed"] == 0 and checks["geometry.raycast_depth"]["failed"] == 0


def rows_by_key(rows: dict[str, dict]) -> dict[str, dict]:
    return {f"{r['synset_id']}/{r['model_id']}": r for r in rows.values()}


def source_distance(ds: Path, row: dict) -> tuple[float, dict]:
    """p99 distance (relative to the file's diagonal) of the stored fused points, mapped back to the
    file's own coordinates through the inverse of source_to_world, to the file's surface."""
    a = load(ds, row)
    v, t = read_source_mesh(row["obj_path"], row["format"])
    back = apply_transform(np.linalg.inv(a["source_to_world"]), a["fused_points"][: int(a["fused_point_count"])])
    d = MeshRaycaster(v, t).distance(back)
    return float(np.percentile(d, 99) / np.linalg.norm(v.max(0) - v.min(0))), a


def test_stored_points_map_back_to_each_files_own_coordinates(assets_dataset):
    ds, _, _ = assets_dataset
    rows = by_file(ds)
    for name in ("Duck.glb", "CesiumMilkTruck.glb", "TestScene.gltf", "bunny.ply", "teapot.stl", "ballA.off",
                 "rabbit.obj", "godot-player-player.glb"):
        p99, a = source_distance(ds, rows[name])
        assert p99 < 1e-4, (name, p99)
        pts = a["fused_points"][: int(a["fused_point_count"])]
        assert np.linalg.norm(pts.max(0) - pts.min(0)) <= 1.0 + 1e-6 and np.abs(pts).max() <= 0.5 + 1e-6  # unit diagonal
        assert np.isclose(a["diagonal"], 1.0, atol=1e-6) and np.linalg.norm(a["bounding_sphere"][:3]) < 1e-6


def test_up_axis_per_format_and_characters_stand_upright(assets_dataset):
    ds, _, _ = assets_dataset
    rows = by_file(ds)
    assert rows["teapot.stl"]["up_axis"] == "+z" and rows["ballA.off"]["up_axis"] == "+z"
    assert rows["Duck.glb"]["up_axis"] == "+y" and rows["bunny.ply"]["up_axis"] == "+y"
    teapot = load(ds, rows["teapot.stl"])["source_to_world"]
    assert np.allclose(teapot[:3, :3] @ [0, 0, 1] / np.linalg.norm(teapot[:3, :3] @ [0, 0, 1]), [0, 1, 0])
    for name in ("godot-characters-mannequiny.glb", "godot-player-player.glb"):  # skinned, in the nodes' pose
        a = load(ds, rows[name])
        pts = a["fused_points"][: int(a["fused_point_count"])]
        extent = pts.max(0) - pts.min(0)
        assert np.argmax(extent) == 1, (name, extent)  # taller than wide or deep: standing on +Y, not lying down


def test_view_shows_non_shapenet_objects_on_their_source_meshes(assets_dataset, real_assets, tmp_path):
    """cma-build view on the folder dataset: a skinned character, an OFF file and a glTF with a side .bin,
    with --source; the recorded mesh is the file's (through source_to_world) and the stored cloud lies on it."""
    from test_view import read_back

    ds, _, _ = assets_dataset
    rows = by_file(ds)
    names = ("godot-player-player.glb", "ballA.off", "TestScene.gltf")
    keys = [f"{rows[n]['synset_id']}/{rows[n]['model_id']}" for n in names]
    out = tmp_path / "assets.rrd"
    proc = run_cli("cma-build", "view", str(ds), "--objects", ",".join(keys), "--source", str(real_assets),
                   "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    rec = read_back(out)
    for name, key in zip(names, keys):
        a = load(ds, rows[name])
        v, t = read_source_mesh(rows[name]["obj_path"], rows[name]["format"], real_assets)
        mesh = rec[f"/objects/{key}/source_mesh"]
        vertices = np.asarray(mesh["Position3D"], dtype=np.float64)
        assert np.abs(vertices - apply_transform(a["source_to_world"], v)).max() < 1e-6
        assert np.array_equal(np.asarray(mesh["TriangleIndices"]), t)
        m = int(a["fused_point_count"])
        points = np.asarray(rec[f"/objects/{key}/fused_points"]["Position3D"], dtype=np.float64)
        assert len(points) == m and np.percentile(MeshRaycaster(vertices, t).distance(points), 99) < 1e-4, name
        cams = {e.split("/cams/")[1][:7] for e in rec if e.startswith(f"/objects/{key}/cams/")}
        assert len(cams) == a["K"].shape[0]


def test_materials_textures_vertex_colours_and_neutral_grey(assets_dataset):
    ds, _, _ = assets_dataset
    rows = by_file(ds)

    def colours(name: str) -> np.ndarray:
        a = load(ds, rows[name])
        return a["rgb"][a["mask"]].astype(np.int16)

    duck = colours("Duck.glb").mean(0)
    assert duck[0] > duck[2] + 60 and duck[1] > duck[2] + 40  # its yellow base colour texture
    grey = colours("rabbit.obj")  # an OBJ whose MTL is missing: neutral grey, never a random colour
    assert np.abs(grey[:, 0] - grey[:, 1]).max() <= 2 and np.abs(grey[:, 1] - grey[:, 2]).max() <= 2
    assert "mtl_missing" in rows["rabbit.obj"]["warnings"]
    faces = colours("whitespace.off")  # COFF face colours: a red top, greenish sides
    assert ((faces[:, 0] > 150) & (faces[:, 1] < 80)).any() and (faces[:, 1] > faces[:, 0] + 40).any()
    assert len({tuple(c) for c in colours("CesiumMilkTruck.glb")[::7]}) > 50  # textured, not flat


def test_layouts_render_validate_and_train(real_assets, tmp_path):
    """Objaverse (with LVIS categories), ModelNet (official split) and folder layouts built from the
    real files: each renders, passes validate --source, previews, exports; labels are the categories;
    pcssl-train pretrains and evaluates on the ModelNet one."""
    glb = real_assets / "glb"
    objaverse_layout(tmp_path / "objaverse", [glb / "Duck.glb", glb / "godot-enemy-enemy.glb", glb / "monkey.glb",
                                              glb / "BoxTextured.glb"], {"duck": [0], "robot": [1]})
    mn = tmp_path / "ModelNet"
    for cls, split, name in [("ball", "train", "ballA.off"), ("ball", "test", "ballB.off"),
                             ("box", "train", "assimp-Cube.off"), ("box", "train", "comments.off"),
                             ("box", "test", "whitespace.off"), ("ball", "train", "ballB.off")]:
        n = len(list((mn / cls).glob("*/*.off"))) if (mn / cls).is_dir() else 0
        link(real_assets / "mesh" / name, mn / cls / split / f"{cls}_{n + 1:04d}.off")
    folder = tmp_path / "folder"
    link(real_assets / "mesh" / "teapot.stl", folder / "kitchen" / "teapot.stl")
    link(real_assets / "mesh" / "suzanne.ply", folder / "heads" / "suzanne.ply")
    link(real_assets / "gltf" / "TestScene.gltf", folder / "scenes" / "TestScene.gltf")
    link(real_assets / "gltf" / "TestScene.bin", folder / "scenes" / "TestScene.bin")
    for src, layout, n in [(tmp_path / "objaverse", "objaverse", 4), (mn, "modelnet", 6), (folder, "folder", 3)]:
        ds = tmp_path / f"ds-{layout}"
        proc = render_source(src, ds)
        assert proc.returncode == 0 and f"{n} rendered, 0 failed" in proc.stdout, proc.stdout + proc.stderr
        report = validate_source(ds, src)
        assert report["passed"] and report["geometry_checked"], report["failures"][:3]
        attrs = DatasetReader.open(ds).attrs
        assert attrs["source"]["layout"] == layout
        rows = index_rows(ds)
        assert all(attrs["label_names"][int(r["label"])] == r["synset_id"] for r in rows)
        proc = run_cli("cma-build", "preview", str(ds), "--out", str(tmp_path / f"preview-{layout}"))
        assert proc.returncode == 0 and (tmp_path / f"preview-{layout}" / "grid.png").is_file(), proc.stderr
    rows = {r["model_id"]: r for r in index_rows(tmp_path / "ds-objaverse")}
    assert sorted(r["category"] for r in rows.values()) == ["duck", "robot", "uncategorized", "uncategorized"]
    assert DatasetReader.open(tmp_path / "ds-objaverse").attrs["label_categories"] == ["duck", "robot", "uncategorized"]
    mn_rows = index_rows(tmp_path / "ds-modelnet")
    assert sorted((r["model_id"], r["split"]) for r in mn_rows) == [
        ("ball_0001", "train"), ("ball_0002", "test"), ("ball_0003", "train"), ("box_0001", "train"),
        ("box_0002", "train"), ("box_0003", "test")]
    proc = run_cli("cma-build", "export", str(tmp_path / "ds-modelnet"), "--format", "shapenet55", "--points", "1024",
                   "--out", str(tmp_path / "sn55"), "--categories", "ball")
    assert proc.returncode == 0 and len(list((tmp_path / "sn55" / "shapenet_pc").glob("ball-*.npy"))) == 3, proc.stderr
    for fmt in ("ply", "nerf", "colmap"):
        proc = run_cli("cma-build", "export", str(tmp_path / "ds-objaverse"), "--format", fmt, "--out", str(tmp_path / fmt))
        assert proc.returncode == 0 and "Exported 4 objects" in proc.stdout, proc.stdout + proc.stderr
    run = tmp_path / "run"
    proc = run_cli("pcssl-train", "pretrain", "-c", "point-mae-tiny", "-d", str(tmp_path / "ds-modelnet"), "-o", str(run),
                   "--set", "optim.epochs=1", "--set", "optim.warmup_epochs=0", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("pcssl-train", "eval", str(run), "-b", "cma", "-r", str(tmp_path / "ds-modelnet"), "-p", "svm",
                   "--no-progress")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    proc = render_source(folder, tmp_path / "ds-modelnet")  # another layout's objects into that dataset
    assert proc.returncode == 2 and "holds objects of a modelnet collection, not folder" in proc.stderr


def glb_with(tmp: Path, name: str, doc_changes: dict) -> Path:
    """A one-triangle GLB with ``doc_changes`` merged into its JSON."""
    data = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]}],
           "bufferViews": [{"buffer": 0, "byteLength": 36}], "buffers": [{"byteLength": 36}], **doc_changes}
    path = tmp / name
    path.write_bytes(glb_bytes(doc, data))
    return path


def test_broken_files_fail_alone_with_a_reason_draco_and_transparency(real_assets, tmp_path):
    """Broken files are skipped with their reason while the rest render; a Draco mesh renders and
    validates; transparent surfaces (alpha mask cut-out, alpha blend) are geometry: in the mask, the
    depth and the points (validate --source's ray casting agrees), while the RGB shows through them;
    unlit and emissive materials, vertex colours, a missing texture, fans and GPU instancing."""
    src = tmp_path / "src"
    (src / "bad").mkdir(parents=True)
    (src / "good").mkdir()
    link(real_assets / "mesh" / "ballA.off", src / "good" / "ball.off")
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [2, 3, 7], [2, 7, 6],
                  [1, 2, 6], [1, 6, 5], [0, 4, 7], [0, 7, 3]])
    draco_glb(src / "good" / "draco_box.glb", v * [2.0, 1.0, 0.5], f)
    quad = {"meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "material": 0}]}]}
    glb_with(src / "good", "cutout.glb", {**quad, "materials": [{"alphaMode": "MASK", "alphaCutoff": 0.5, "doubleSided": True,
                                                                 "pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 0.1]}}]})
    glb_with(src / "good", "blend.glb", {**quad, "materials": [{"alphaMode": "BLEND", "doubleSided": True,
                                                                "pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 0.5]}}]})
    glb_with(src / "good", "lines.glb", {"meshes": [{"primitives": [  # a triangle and a line strip over it: only the surface
        {"attributes": {"POSITION": 0}}, {"attributes": {"POSITION": 0}, "mode": 3}]}]})
    glb_with(src / "good", "notex.glb", {  # a base colour texture whose file is missing: grey, with a warning
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}]}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0],
                       "max": [1, 1, 0]}, {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC2"}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}, "doubleSided": True}],
        "textures": [{"source": 0}], "images": [{"uri": "missing.png"}]})
    (src / "good" / "colours.ply").write_text(  # PLY vertex colours (sRGB bytes): a red and a blue corner
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nelement face 2\n"
        "property list uchar int vertex_indices\nend_header\n"
        "0 0 0 255 0 0\n1 0 0 255 0 0\n1 1 0 0 0 255\n0 1 0 0 0 255\n3 0 1 2\n3 0 2 3\n")
    glb_with(src / "bad", "badtex.glb", {  # Blender's importer makes node 0's big triangle, then fails on node 1's
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]},  # VEC3 texture coordinates: nothing may
                   {"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 0}}]}],  # be left for the next file
        "nodes": [{"mesh": 0, "scale": [3, 3, 3], "translation": [-1, -1, 0]}, {"mesh": 1}], "scenes": [{"nodes": [0, 1]}]})
    glb_with(src / "good", "unlit.glb", {**quad, "extensionsUsed": ["KHR_materials_unlit"], "materials": [{
        "pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.1, 0.1, 1]}, "doubleSided": True,
        "extensions": {"KHR_materials_unlit": {}}}]})
    glb_with(src / "good", "emissive.glb", {**quad, "materials": [{
        "pbrMetallicRoughness": {"baseColorFactor": [0, 0, 0, 1]}, "emissiveFactor": [0.1, 0.8, 0.1],
        "doubleSided": True}]})
    glb_with(src / "good", "fan.glb", {"meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 6}]}]})
    instances = struct.pack("<9f", 0, 0, 0, 2, 0, 0, 0, 0, 2)  # EXT_mesh_gpu_instancing: three copies
    (src / "good" / "instanced.glb").write_bytes(glb_bytes({
        "asset": {"version": "2.0"}, "extensionsUsed": ["EXT_mesh_gpu_instancing"], "scene": 0,
        "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "extensions": {"EXT_mesh_gpu_instancing": {
            "attributes": {"TRANSLATION": 1}}}}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0],
                       "max": [1, 1, 0]}, {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 36}],
        "buffers": [{"byteLength": 72}]}, struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0) + instances))
    glb_with(src / "bad", "basisu.glb", {"extensionsUsed": ["KHR_texture_basisu"],
                                         "extensionsRequired": ["KHR_texture_basisu"]})
    glb_with(src / "bad", "points.glb", {"meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 0}]}]})
    good = (src / "good" / "draco_box.glb").read_bytes()
    (src / "bad" / "cut.glb").write_bytes(good[: len(good) // 2])
    (src / "bad" / "garbage.stl").write_bytes(b"\x00\x01garbage" * 10)
    (src / "bad" / "huge.ply").write_text("ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\n"
                                          "property float x\nproperty float y\nproperty float z\nelement face 1\n"
                                          "property list uchar int vertex_indices\nend_header\n")
    proc = render_source(src, tmp_path / "ds", "--workers", "1")  # one worker: the good files follow the bad ones
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    rows = by_file(tmp_path / "ds")
    assert rows["badtex.glb"]["status"] == "failed" and "glTF importer: ValueError" in rows["badtex.glb"]["error"]
    reasons = {"basisu.glb": "gltf_extension_unsupported: KHR_texture_basisu", "points.glb": "no_triangles",
               "cut.glb": "gltf_truncated", "garbage.stl": "stl_", "huge.ply": "ply_truncated"}
    for name, reason in reasons.items():
        assert rows[name]["status"] == "skipped" and reason in rows[name]["error"], rows[name]
    assert {n for n, r in rows.items() if r["status"] == "done"} == {
        "ball.off", "draco_box.glb", "cutout.glb", "blend.glb", "lines.glb", "notex.glb", "colours.ply", "fan.glb",
        "instanced.glb", "unlit.glb", "emissive.glb"}
    assert "texture_missing" in rows["notex.glb"]["warnings"] and "texture_fallback" in rows["notex.glb"]["warnings"]
    # the Draco mesh decoded by DracoPy (through trimesh). The image checks read the cut-out triangle's white
    # (the background through it) as blank and clipped, by design; both flat triangles are edge-on in two views.
    report = validate_source(tmp_path / "ds", src, "--threshold", "images.rgb_blank=0", "--threshold",
                             "images.saturated=1")
    assert report["passed"] and report["objects_checked"] == 11, report["failures"][:3]
    inst = load(tmp_path / "ds", rows["instanced.glb"])  # three triangles side by side, 2 apart along x and z
    pts = inst["fused_points"][: int(inst["fused_point_count"])]
    assert np.ptp(apply_transform(np.linalg.inv(inst["source_to_world"]), pts), axis=0)[0] > 2.5
    p99, a = source_distance(tmp_path / "ds", rows["draco_box.glb"])
    assert p99 < 1e-4
    cut, blend = load(tmp_path / "ds", rows["cutout.glb"]), load(tmp_path / "ds", rows["blend.glb"])
    assert cut["mask"].sum() > 50 and (cut["depth"][cut["mask"]] > 0).all()
    assert (cut["rgb"][cut["mask"]].astype(int).min(axis=1) >= 250).mean() > 0.9  # cut out: the white background
    colours = blend["rgb"][blend["mask"]].astype(int)
    assert np.median(colours[:, 0]) > 200 and 60 < np.median(colours[:, 1]) < 230  # half red, half background
    grey = load(tmp_path / "ds", rows["notex.glb"])
    grey = grey["rgb"][grey["mask"]].astype(int)
    assert np.abs(grey[:, 0] - grey[:, 2]).max() <= 2 and np.abs(grey[:, 0] - grey[:, 1]).max() <= 2
    for name, channel in (("unlit.glb", 0), ("emissive.glb", 1)):  # the file's colour whatever the light rig does
        c = load(tmp_path / "ds", rows[name])
        c = c["rgb"][c["mask"]].astype(int)
        others = [k for k in range(3) if k != channel]
        assert (np.median(c[:, channel]) > np.median(c[:, others], axis=0) + 80).all(), (name, np.median(c, axis=0))
        assert c[:, channel].std() < 12, name  # flat: not shaded by the suns
    ply = load(tmp_path / "ds", rows["colours.ply"])
    ply = ply["rgb"][ply["mask"]].astype(int)
    assert ((ply[:, 0] > ply[:, 2] + 60)).any() and ((ply[:, 2] > ply[:, 0] + 60)).any()  # red and blue corners


def test_up_axis_override_is_recorded_and_used(tmp_path):
    modelnet_layout(tmp_path / "mn")  # OFF files: +z up by default
    proc = render_source(tmp_path / "mn", tmp_path / "ds", "--up-axis", "y", "--categories", "chair", "--limit", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = index_rows(tmp_path / "ds")[0]
    assert row["up_axis"] == "+y"
    m = load(tmp_path / "ds", row)["source_to_world"]
    assert np.allclose(m[:3, :3] / np.linalg.norm(m[:3, 0]), np.eye(3))  # no turn: the file's +Y is up


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_batch_slices_and_merge_cover_a_folder_layout(real_assets, tmp_path):
    """Two --num-shards slices of a folder collection render disjoint halves into one dataset;
    merge then validates as one."""
    src = tmp_path / "src"
    for name in ("ballA.off", "ballB.off", "teapot.stl", "bunny.ply", "fandisk.obj"):
        link(real_assets / "mesh" / name, src / "meshes" / name)
    link(real_assets / "glb" / "Duck.glb", src / "glb" / "Duck.glb")
    for i in range(2):
        proc = render_source(src, tmp_path / "ds", "--num-shards", "2", "--shard-index", str(i))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("cma-build", "merge", str(tmp_path / "ds"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = index_rows(tmp_path / "ds")
    assert sorted(Path(r["obj_path"]).name for r in rows if r["status"] == "done") == [
        "Duck.glb", "ballA.off", "ballB.off", "bunny.ply", "fandisk.obj", "teapot.stl"]
    assert len({r["shard"] for r in rows}) == 2  # one shard per slice
    assert validate_source(tmp_path / "ds", src)["passed"]
