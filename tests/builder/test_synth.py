"""The procedural mini-ShapeNet, read back with an independent mesh reader (open3d)."""

import filecmp
import json
import re
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from cma_builder.errors import CmaError
from cma_builder.source.synth import CATEGORY_IDS, synthesize
from cma_builder.source.taxonomy import Taxonomy
from conftest import obj_groups

o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)

REAL_IDS = {"02691156": "airplane", "02876657": "bottle", "02958343": "car", "03001627": "chair",
            "03636649": "lamp", "03797390": "mug", "04256520": "sofa", "04379243": "table"}


def models(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/models/model_normalized.obj"))


def read(path: Path) -> o3d.geometry.TriangleMesh:
    return o3d.io.read_triangle_mesh(str(path), enable_post_processing=False)


def file_vertices(path: Path) -> np.ndarray:
    return np.array([[float(x) for x in l.split()[1:4]] for l in path.read_text().splitlines() if l.startswith("v ")])


def test_layout_and_taxonomy(synth_tree):
    assert set(CATEGORY_IDS) == set(REAL_IDS) and len(CATEGORY_IDS) >= 8
    taxonomy = json.loads((synth_tree / "taxonomy.json").read_text())
    assert {e["synsetId"]: e["name"].split(",")[0] for e in taxonomy} == REAL_IDS
    assert {e["synsetId"] for e in taxonomy} <= set(Taxonomy.bundled().synsets)
    for sid in REAL_IDS:
        model_dirs = sorted((synth_tree / sid).iterdir())
        assert len(model_dirs) == 3
        for d in model_dirs:
            assert re.fullmatch(r"[0-9a-f]{32}", d.name)
            for ext in ("obj", "mtl", "json"):
                assert (d / "models" / f"model_normalized.{ext}").is_file()
            stats = json.loads((d / "models" / "model_normalized.json").read_text())
            assert stats["id"] == d.name and set(stats) == {"max", "centroid", "id", "numVertices", "min"}


def test_open3d_reads_every_model_normalized_like_shapenet(synth_tree):
    for obj in models(synth_tree):
        mesh = read(obj)
        v = np.asarray(mesh.vertices)
        n_faces = sum(1 for l in obj.read_text().splitlines() if l.startswith("f "))
        assert len(mesh.triangles) == n_faces > 0
        unique = np.unique(v, axis=0)
        assert len(unique) == len(file_vertices(obj))  # open3d duplicates per corner; positions are unique
        lo, hi = v.min(axis=0), v.max(axis=0)
        assert abs(np.linalg.norm(hi - lo) - 1.0) < 2e-6, obj  # unit bounding-box diagonal
        assert np.abs(unique.mean(axis=0)).max() < 2e-6, obj  # vertex centroid at the origin
        # model_normalized.json holds the pre-normalization frame, as in ShapeNetCore.v2.
        stats = json.loads(obj.with_suffix(".json").read_text())
        orig_lo, orig_hi, c = (np.array(stats[k]) for k in ("min", "max", "centroid"))
        scale = np.linalg.norm(orig_hi - orig_lo)
        assert np.allclose((orig_lo - c) / scale, lo, atol=2e-6) and np.allclose((orig_hi - c) / scale, hi, atol=2e-6)
        assert stats["numVertices"] == len(unique)


def test_face_winding_agrees_with_file_normals(synth_tree):
    for obj in models(synth_tree):
        mesh = read(obj)
        file_normals = np.asarray(mesh.vertex_normals).copy()
        tris = np.asarray(mesh.triangles)
        mesh.compute_triangle_normals()
        geo = np.asarray(mesh.triangle_normals)
        agree = (np.einsum("ij,ij->i", geo, file_normals[tris].sum(axis=1)) > 0).mean()
        assert agree > 0.999, (obj, agree)


def test_materials_textures_and_transparency(synth_tree):
    textured = transparent = 0
    for obj in models(synth_tree):
        mtl = obj.with_suffix(".mtl").read_text()
        assert len(re.findall(r"^newmtl ", mtl, re.M)) >= 2, obj
        mesh = read(obj)
        assert len(np.unique(np.asarray(mesh.triangle_material_ids))) >= 2, obj
        refs = re.findall(r"^map_Kd (.+)$", mtl, re.M)
        for ref in refs:
            assert re.fullmatch(r"\.\./images/texture\d+\.jpg", ref)
            image = obj.parent / ref
            assert image.read_bytes()[:3] == b"\xff\xd8\xff"  # real JPEG data
        loaded = [np.asarray(t) for t in mesh.textures if not t.is_empty()]
        assert len(loaded) == len(refs)  # open3d finds and decodes every referenced texture
        assert all(t.shape == (128, 128, 3) for t in loaded)
        images = obj.parent.parent / "images"
        assert images.is_dir() == bool(refs)
        if refs:
            assert sorted(p.name for p in images.iterdir()) == sorted(Path(r).name for r in refs)
        textured += bool(refs)
        transparent += bool(re.search(r"^d 0\.3$", mtl, re.M))
    n = len(models(synth_tree))
    assert 0.2 * n <= textured <= 0.8 * n
    assert 1 <= transparent <= 0.5 * n


def group_center(obj: Path, prefix: str) -> np.ndarray | None:
    v = file_vertices(obj)
    idx = [i for g, ids in obj_groups(obj).items() if g and g.startswith(prefix) for i in ids]
    return v[np.array(idx) - 1].mean(axis=0) if idx else None


def test_y_up_and_minus_z_front(synth_tree):
    """Named parts sit where Y-up, -Z-front puts them."""
    for obj in models(synth_tree):
        sid = obj.parts[-4]
        v = file_vertices(obj)
        ext = v.max(axis=0) - v.min(axis=0)
        if sid == "02958343":  # car: long along Z, headlights at the front (-Z)
            assert ext[2] > ext[0] > ext[1]
            assert group_center(obj, "headlight")[2] < 0 < group_center(obj, "taillight")[2]
            assert group_center(obj, "roof")[1] > group_center(obj, "wheel")[1]
        elif sid == "02691156":  # airplane: tail fin at the back, above the wings
            assert group_center(obj, "fin")[2] > 0
            assert group_center(obj, "fin")[1] > group_center(obj, "wing")[1]
        elif sid in ("03001627", "04256520"):  # chair, sofa: the back rises at the rear
            back, seat = group_center(obj, "back"), group_center(obj, "seat")
            assert back[2] > seat[2] and back[1] > seat[1]
        elif sid == "04379243":
            assert group_center(obj, "top")[1] == pytest.approx(v[:, 1].max(), abs=0.05)
        elif sid == "03636649":
            assert group_center(obj, "shade")[1] > group_center(obj, "base")[1]
        elif sid in ("02876657", "03797390"):  # bottle, mug: upright
            assert ext[1] == ext.max() or sid == "03797390"
            assert group_center(obj, "cap" if sid == "02876657" else "handle") is None or (
                group_center(obj, "cap" if sid == "02876657" else "handle")[1] > v[:, 1].min())


def _descriptor(obj: Path, rng: np.random.Generator) -> np.ndarray:
    """Extents plus a D2 shape distribution from uniform surface samples (open3d)."""
    mesh = read(obj)
    o3d.utility.random.seed(0)
    pts = np.asarray(mesh.sample_points_uniformly(1024).points)
    a, b = rng.integers(0, len(pts), (2, 4000))
    d2 = np.histogram(np.linalg.norm(pts[a] - pts[b], axis=1), bins=16, range=(0, 1), density=True)[0] / 16
    ext = pts.max(axis=0) - pts.min(axis=0)
    return np.concatenate([ext * 2, d2])


def test_shapes_vary_within_and_differ_between_categories(tmp_path):
    root = tmp_path / "six"
    synthesize(root, per_category=6, seed=3, show_progress=False)
    rng = np.random.default_rng(0)
    objs = models(root)
    labels = np.array([o.parts[-4] for o in objs])
    desc = np.stack([_descriptor(o, rng) for o in objs])
    dist = np.linalg.norm(desc[:, None] - desc[None], axis=-1)
    for sid in REAL_IDS:  # variety within each category
        d = dist[np.ix_(labels == sid, labels == sid)]
        assert d[np.triu_indices(6, 1)].min() > 1e-3, sid
    np.fill_diagonal(dist, np.inf)
    accuracy = (labels[dist.argmin(axis=1)] == labels).mean()  # leave-one-out 1-NN
    assert accuracy >= 0.75, accuracy  # chance: 0.125


def tree_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_seed_byte_identical_and_models_independent_of_count(tmp_path):
    a, b, c, d = (tmp_path / x for x in "abcd")
    synthesize(a, per_category=2, seed=7, show_progress=False)
    synthesize(b, per_category=2, seed=7, show_progress=False)
    files = tree_files(a)
    assert files == tree_files(b) and len(files) > 8 * 2 * 3
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert mismatch == [] and errors == []
    synthesize(c, per_category=2, seed=8, show_progress=False)
    assert tree_files(c) != files  # another seed, other models
    synthesize(d, per_category=1, seed=7, show_progress=False)
    for rel in tree_files(d):  # the first model of each category does not depend on the count
        if rel.endswith((".obj", ".mtl", ".jpg")):
            assert (d / rel).read_bytes() == (a / rel).read_bytes()


def test_synth_never_overwrites_foreign_folders_and_replaces_its_own(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(CmaError, match="not a cma-build synth output"):
        synthesize(foreign, per_category=1, show_progress=False)
    assert (foreign / "thesis.tex").read_text() == "precious"

    out = tmp_path / "mini"
    synthesize(out, per_category=2, seed=1, show_progress=False)
    synthesize(out, per_category=1, seed=1, categories=["03797390"], show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["03797390", "README.txt", "taxonomy.json"]
    assert len(list((out / "03797390").iterdir())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind
    with pytest.raises(CmaError, match="per-category"):
        synthesize(out, per_category=0, show_progress=False)
    with pytest.raises(CmaError, match="no generator for 02808440"):
        synthesize(out, per_category=1, categories=["02808440"], show_progress=False)
