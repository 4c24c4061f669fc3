"""Collections beyond ShapeNet, without Blender: layout detection, ids, categories, splits, up
axes, the normalising transform, the scan manifest of every layout. Layouts are built in the test
(from small files written here, or hard links to ../shared/data/assets-real)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cma_builder.errors import CmaError
from cma_builder.paths import name_problem
from cma_builder.source import open_source
from cma_builder.source.base import UP_AXES, apply_transform, normalising_transform, parse_up_axis, safe_id, up_rotation
from cma_builder.source.files import category_id
from cma_builder.source.manifest import read_manifest
from cma_builder.source.scan import scan, summary_lines

CUBE_OFF = "OFF\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1)) + (
    "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n")
TRI_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def objaverse_layout(root: Path, glbs: list[Path], lvis: dict[str, list[str]] | None) -> list[str]:
    """hf-objaverse-v1/glbs/000-00N/<uid>.glb for each file (uids made up), and the LVIS index."""
    base = root / "hf-objaverse-v1"
    uids = []
    for i, glb in enumerate(glbs):
        uid = f"{i:02d}" + "ab" * 15
        link(glb, base / "glbs" / f"000-{i % 2:03d}" / f"{uid}.glb")
        uids.append(uid)
    paths = {u: f"glbs/000-{i % 2:03d}/{u}.glb" for i, u in enumerate(uids)}
    paths["ff" * 16] = "glbs/000-009/" + "ff" * 16 + ".glb"  # listed, not downloaded
    with gzip.open(base / "object-paths.json.gz", "wt") as fh:
        json.dump(paths, fh)
    if lvis is not None:
        with gzip.open(base / "lvis-annotations.json.gz", "wt") as fh:
            json.dump({name: [uids[i] for i in idx] for name, idx in lvis.items()}, fh)
    return uids


def modelnet_layout(root: Path) -> None:
    for cls, split, n in (("chair", "train", 2), ("chair", "test", 1), ("night_stand", "train", 1)):
        for k in range(n):
            f = root / cls / split / f"{cls}_{k + (10 if split == 'test' else 1):04d}.off"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(CUBE_OFF)


def test_up_axes_turn_to_plus_y_by_proper_rotations():
    unit = {"x": 0, "y": 1, "z": 2}
    for axis in UP_AXES:
        R = up_rotation(axis)
        v = np.zeros(3)
        v[unit[axis[1]]] = 1 if axis[0] == "+" else -1
        assert np.allclose(R @ v, [0, 1, 0]) and np.isclose(np.linalg.det(R), 1) and np.allclose(R @ R.T, np.eye(3))
    assert np.allclose(up_rotation("+z") @ [1, 2, 3], [1, 3, -2])  # (x, y, z) -> (x, z, -y)
    assert parse_up_axis("Z") == "+z" and parse_up_axis("-y") == "-y" and parse_up_axis(None) is None
    with pytest.raises(CmaError, match="--up-axis 'w'"):
        parse_up_axis("w")


def test_normalising_transform_centres_scales_and_maps_back():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3)) * [3, 1, 7] + [10, -4, 2]
    m = normalising_transform(v, "+z")
    w = apply_transform(m, v)
    lo, hi = w.min(axis=0), w.max(axis=0)
    assert np.allclose((lo + hi) / 2, 0, atol=1e-12) and np.isclose(np.linalg.norm(hi - lo), 1)
    assert np.argmax(hi - lo) == 1 and np.isclose((hi - lo)[1], (v.max(0) - v.min(0))[2] / np.linalg.norm(v.max(0) - v.min(0)))
    assert np.allclose(apply_transform(np.linalg.inv(m), w), v)  # stored -> the file's own coordinates
    with pytest.raises(ValueError, match="single point"):
        normalising_transform(np.ones((5, 3)), "+y")


def test_safe_ids_are_safe_distinct_and_readable():
    texts = ["chairs/ikea/a.obj", "chairs__ikea__a.obj", "../x.obj", ".hidden.glb", "sp ace/é.stl", "a" * 400,
             "a/b", "a_b", "CON", "x\\y.obj"]
    ids = [safe_id(t) for t in texts]
    assert all(name_problem(i) is None for i in ids)
    assert ids[0] == "chairs__ikea__a.obj" == ids[1]  # a plain relative path stays readable (and may meet another)
    assert len(set(ids[2:])) == len(ids[2:])
    assert category_id("bow_(weapon)") == "bow_weapon" and category_id("chair") == "chair"
    assert name_problem(category_id("..")) is None and name_problem(category_id("/")) is None


def test_folder_layout_categories_ids_splits_and_formats(tmp_path):
    root = tmp_path / "meshes"
    (root / "chairs" / "ikea").mkdir(parents=True)
    (root / "chairs" / "ikea" / "a.obj").write_text(TRI_OBJ)
    (root / "chairs" / "b.OFF").write_text(CUBE_OFF)
    (root / "loose.obj").write_text(TRI_OBJ)
    (root / "chairs" / "notes.txt").write_text("not a mesh")
    (root / ".cache").mkdir()
    (root / ".cache" / "hidden.obj").write_text(TRI_OBJ)
    src = open_source(root)
    assert src.layout == "folder"
    objs = {o.object_id: o for o in src.objects()}
    assert set(objs) == {"chairs__ikea__a.obj", "chairs__b.OFF", "loose.obj"}
    assert objs["chairs__b.OFF"].fmt == "off" and objs["chairs__b.OFF"].up_axis == "+z"
    assert objs["chairs__ikea__a.obj"].up_axis == "+y" and objs["chairs__ikea__a.obj"].normalise
    assert objs["loose.obj"].category == "uncategorized" and objs["chairs__b.OFF"].category == "chairs"
    assert src.categories() == [("chairs", "chairs"), ("uncategorized", "uncategorized")]
    assert all(o.split is None for o in objs.values())
    assert {o.up_axis for o in open_source(root, up_axis="-x").objects()} == {"-x"}
    assert src.resolve(["CHAIRS"]) == ["chairs"]
    with pytest.raises(CmaError, match="unknown category 'sofa'.*chairs"):
        src.resolve(["sofa"])


def test_modelnet_layout_keeps_the_official_split(tmp_path):
    modelnet_layout(tmp_path / "ModelNet10")
    src = open_source(tmp_path / "ModelNet10")
    assert src.layout == "modelnet"
    objs = list(src.objects())
    assert [(o.category_id, o.object_id, o.split) for o in objs] == [
        ("chair", "chair_0001", "train"), ("chair", "chair_0002", "train"), ("chair", "chair_0010", "test"),
        ("night_stand", "night_stand_0001", "train")]
    assert {o.up_axis for o in objs} == {"+z"} and {o.fmt for o in objs} == {"off"}
    rows = scan(tmp_path / "ModelNet10", show_progress=False).rows
    assert [r.split for r in rows] == ["train", "train", "test", "train"]  # the folder's, not splits.json's
    assert all(r.status == "ok" and r.n_triangles == 12 and r.format == "off" for r in rows)


def test_objaverse_layout_uids_and_lvis_categories(real_assets, tmp_path):
    glbs = sorted((real_assets / "glb").glob("*.glb"))[:5]
    uids = objaverse_layout(tmp_path / "objaverse", glbs, {"duck": [0, 3], "bow_(weapon)": [1]})
    for root in (tmp_path / "objaverse", tmp_path / "objaverse" / "hf-objaverse-v1"):
        src = open_source(root)
        assert src.layout == "objaverse"
        objs = {o.object_id: o for o in src.objects()}
        assert set(objs) == set(uids)
        assert objs[uids[0]].category == "duck" and objs[uids[1]].category_id == "bow_weapon"
        assert objs[uids[2]].category_id == "uncategorized" and objs[uids[4]].category_id == "uncategorized"
        assert {o.fmt for o in objs.values()} == {"glb"} and {o.up_axis for o in objs.values()} == {"+y"}
        assert src.categories() == [("bow_weapon", "bow_(weapon)"), ("duck", "duck"), ("uncategorized", "uncategorized")]
    assert src.summary_name().endswith("5 of the 6 objects object-paths.json.gz lists are here")
    (tmp_path / "objaverse" / "hf-objaverse-v1" / "lvis-annotations.json.gz").write_bytes(b"not gzip")
    with pytest.raises(CmaError, match="lvis-annotations.json.gz: not a readable gzipped JSON"):
        open_source(tmp_path / "objaverse")


def test_objaverse_without_lvis_is_uncategorized(real_assets, tmp_path):
    objaverse_layout(tmp_path / "o", sorted((real_assets / "glb").glob("*.glb"))[:2], None)
    src = open_source(tmp_path / "o")
    assert {o.category for o in src.objects()} == {"uncategorized"}


def test_detection_and_forced_layouts(tmp_path, synth_tree):
    assert open_source(synth_tree).layout == "shapenet"
    modelnet_layout(tmp_path / "mn")
    assert open_source(tmp_path / "mn").layout == "modelnet"
    assert open_source(tmp_path / "mn", "folder").layout == "folder"  # the same files as a plain folder
    assert {o.category for o in open_source(tmp_path / "mn", "folder").objects()} == {"chair", "night_stand"}
    (tmp_path / "empty").mkdir()
    for path, layout, message in [
        (tmp_path / "empty", None, "no mesh files found"),
        (tmp_path / "nope", None, "no such folder"),
        (tmp_path / "mn" / "chair" / "train" / "chair_0001.off", None, "is a file"),
        (tmp_path / "mn", "objaverse", "not an Objaverse download"),
        (tmp_path / "mn", "shapenet", "no 8-digit synset folders"),
        (tmp_path / "mn", "bogus", "--layout 'bogus'"),
    ]:
        with pytest.raises(CmaError, match=message):
            open_source(path, layout)
    with pytest.raises(CmaError, match="ShapeNetCore.v2 is \\+y up"):
        open_source(synth_tree, up_axis="+z")


def test_scan_of_every_real_asset_names_each_problem(real_assets, tmp_path):
    """Every file of assets-real gets a row; the faulty ones an error naming the defect; none crashes."""
    out = tmp_path / "manifest.csv"
    result = scan(real_assets, out, show_progress=False, keep_rows=False)
    assert result.rows == [] and result.tally.total == 45
    rows = {Path(r.obj_path).name: r for r in read_manifest(out)}
    expected_errors = {
        "assimp-OutOfMemory.off": "off_truncated", "assimp-empty.off": "file_empty",
        "assimp-invalid.off": "off_", "empty.obj": "obj_empty", "empty_nodes.glb": "no_triangles",
        "notenoughindices.obj": "obj_malformed", "obj_points.obj": "obj_empty", "ply_empty_header.ply": "ply_",
    }
    for name, code in expected_errors.items():
        assert rows[name].status == "error" and any(p.startswith(code) for p in rows[name].problems), rows[name]
    fine = [r for name, r in rows.items() if name not in expected_errors]
    assert all(r.status in ("ok", "warn") and r.n_triangles > 0 for r in fine)
    assert rows["Duck.glb"].n_triangles == 4212 and rows["Duck.glb"].format == "glb"
    assert rows["godot-player-player.glb"].n_armatures >= 1 and rows["godot-player-player.glb"].n_animations >= 1
    assert rows["teapot.stl"].up_axis == "+z" and rows["bunny.ply"].up_axis == "+y"
    assert rows["rabbit.obj"].status == "warn" and any("mtl_missing" in p for p in rows["rabbit.obj"].problems)
    text = "\n".join(summary_lines(result))
    assert "folder collection" in text and "8 objects with errors" in text and "Manifest:" in text


def test_names_from_the_collection_become_safe_distinct_ids(tmp_path):
    """Ids and category names become index rows and file names: whatever the files are called."""
    root = tmp_path / "meshes"
    for rel in ("c/a/b.off", "c/a__b.off", "bad\\cat/x.off", "tab\tcat/y.off", "c/.hidden.off"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(CUBE_OFF)
    objs = list(open_source(root).objects())
    keys = [o.key for o in objs]
    assert len(keys) == len(set(keys)) == 4  # the hidden file is skipped; a/b and a__b stay apart
    assert all(name_problem(cid) is None and name_problem(oid) is None for cid, oid in keys)
    assert all(name_problem(o.category) is None for o in objs)
    mn = tmp_path / "mn"
    for split in ("train", "test"):
        (mn / "chair" / split).mkdir(parents=True)
        (mn / "chair" / split / "chair_0001.off").write_text(CUBE_OFF)
    (mn / "chair" / "train" / ".chair_0002.off").write_text(CUBE_OFF)
    keys = [(o.key, o.split) for o in open_source(mn).objects()]
    assert len(keys) == 2 and len({k for k, _ in keys}) == 2  # same name in train and test: two objects
    ov = tmp_path / "ov" / "glbs" / "000-000"
    ov.mkdir(parents=True)
    for name in ("a\\b.glb", ".hidden.glb", "ok.glb"):
        (ov / name).write_bytes(b"glTF")
    ids = sorted(o.object_id for o in open_source(tmp_path / "ov").objects())
    assert len(ids) == 2 and "ok" in ids and all(name_problem(i) is None for i in ids)


def test_date_named_folders_are_a_folder_not_shapenet(tmp_path):
    for day in ("20240101", "20240102"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "m.off").write_text(CUBE_OFF)
    assert open_source(tmp_path).layout == "folder"


def test_references_outside_the_collection_are_refused_without_reading_them(tmp_path):
    """An MTL, a texture or a glTF buffer a file names must lie inside the collection folder: the
    scan refuses the object (path_outside) instead of letting the file pick what is read."""
    outside = tmp_path / "outside.mtl"
    outside.write_text("newmtl m\nKd 1 0 0\n")
    root = tmp_path / "src"
    (root / "c").mkdir(parents=True)
    (root / "c" / "mtl.obj").write_text("mtllib ../../outside.mtl\n" + TRI_OBJ)
    (root / "c" / "zero.obj").write_text("mtllib /dev/zero\n" + TRI_OBJ)
    (root / "c" / "tex.mtl").write_text("newmtl m\nmap_Kd /etc/hostname\n")
    (root / "c" / "tex.obj").write_text("mtllib tex.mtl\nusemtl m\n" + TRI_OBJ)
    (root / "c" / "far.gltf").write_text(json.dumps({
        "asset": {"version": "2.0"}, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}], "buffers": [{"byteLength": 36, "uri": "../../far.bin"}]}))
    (tmp_path / "far.bin").write_bytes(bytes(36))
    rows = {Path(r.obj_path).name: r for r in scan(root, show_progress=False).rows}
    for name in ("mtl.obj", "zero.obj", "tex.obj", "far.gltf"):
        assert rows[name].status == "error" and any(p.startswith("path_outside") for p in rows[name].problems), rows[name]


def test_absurd_glTF_counts_and_faces_without_triangles_are_refused(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    doc = {"asset": {"version": "2.0"}, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
           "accessors": [{"componentType": 5126, "count": 3_000_000_000, "type": "VEC3"}]}
    (root / "absurd.gltf").write_text(json.dumps(doc))
    (root / "lines.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                                    "property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
                                    "end_header\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n")
    rows = {Path(r.obj_path).name: r for r in scan(root, show_progress=False).rows}
    assert any(p.startswith("gltf_absurd_size") and "3000000000" in p for p in rows["absurd.gltf"].problems)
    assert rows["lines.ply"].status == "error" and any(p.startswith("no_triangles") for p in rows["lines.ply"].problems)
