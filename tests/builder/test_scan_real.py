"""cma-build scan on genuine ShapeNetCore.v2 models (../shared/data/shapenet-real), used in
place and never copied into the repository. Skipped when the sample is absent."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from cma_builder.source.scan import scan

pytestmark = pytest.mark.real_shapenet
o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)


@pytest.fixture(scope="module")
def real_rows(real_shapenet):
    return {r.model_id: r for r in scan(real_shapenet, show_progress=False).rows}


def test_every_real_model_is_found_and_clean(real_shapenet, real_rows):
    on_disk = sorted(p.parents[1].name for p in real_shapenet.glob("*/*/models/model_normalized.obj"))
    assert sorted(real_rows) == on_disk and len(on_disk) >= 10
    for r in real_rows.values():
        assert r.status == "ok", (r.model_id, r.problems)
        assert r.category != "unknown" and r.split in ("train", "val", "test")
        data = Path(r.obj_path).read_bytes()
        assert r.obj_sha256 == hashlib.sha256(data).hexdigest()
    assert any(len(mid) == 31 for mid in real_rows)  # ShapeNet has 31-character ids too


def test_real_counts_match_open3d(real_rows):
    for r in real_rows.values():
        mesh = o3d.io.read_triangle_mesh(r.obj_path, enable_post_processing=False)
        assert r.n_faces == len(mesh.triangles), r.model_id  # ShapeNet faces are triangles
        # open3d keeps the positions faces use, merged; files repeat positions and keep
        # vertices used only by line records, so they count at least as many.
        used = len(np.unique(np.asarray(mesh.vertices), axis=0))
        assert used <= r.n_vertices <= used * 1.05, r.model_id
    assert max(r.n_faces for r in real_rows.values()) > 70000


def test_real_quirks_are_recorded(real_rows):
    notes = [n for r in real_rows.values() for n in r.notes]
    assert any(n.startswith("texture_ext_mismatch:") and "PNG" in n for n in notes)  # a .jpg holding PNG data
    assert any(n.startswith("alpha_map:") for n in notes)  # map_d
    assert sum(r.n_transparent for r in real_rows.values()) >= 4  # d 0.5, d 0.00999999, ...
    textured = [r for r in real_rows.values() if r.textures]
    assert textured and all(not r.textures_missing for r in textured)
    assert all(t.startswith("../images/") for r in textured for t in r.textures)
    names = {r.synset_id: r.category for r in real_rows.values()}
    assert names.get("03001627") == "chair" and names.get("02691156") == "airplane"


def test_truncated_copy_of_a_real_model_is_caught(real_shapenet, real_rows, tmp_path):
    """Copies one real model to a temporary tree (never the repo) and cuts its OBJ."""
    src = min(real_rows.values(), key=lambda r: r.obj_bytes)
    model_dir = Path(src.obj_path).parents[1]
    dst = tmp_path / src.synset_id / src.model_id
    shutil.copytree(model_dir, dst)
    obj = dst / "models" / "model_normalized.obj"
    lines = obj.read_bytes().splitlines(keepends=True)
    obj.write_bytes(b"".join(lines[: len(lines) * 2 // 3]))  # cut at a line boundary
    row = scan(tmp_path, show_progress=False).rows[0]
    assert row.status == "error" and row.problems[0].startswith("obj_truncated:")
