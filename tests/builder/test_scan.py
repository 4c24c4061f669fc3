"""cma-build scan on synth output, on deliberately broken trees, and through the real CLI."""

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

import cma_builder.source.manifest as manifest_mod
from cma_builder.errors import CmaError
from cma_builder.source.manifest import COLUMNS, read_manifest, write_manifest
from cma_builder.source.scan import scan, summary_lines
from cma_builder.source.splits import SplitSpec
from conftest import run_cli

o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)


def by_id(rows):
    return {r.model_id: r for r in rows}


def test_scan_synth_tree_matches_independent_reads(synth_tree, tmp_path):
    out = tmp_path / "manifest.csv"
    result = scan(synth_tree, out, show_progress=False)
    rows = result.rows
    assert len(rows) == 24 and {r.status for r in rows} == {"ok"}
    spec = SplitSpec.bundled()
    for r in rows:
        obj = Path(r.obj_path)
        assert obj == synth_tree / r.synset_id / r.model_id / "models" / "model_normalized.obj"
        data = obj.read_bytes()
        assert r.obj_bytes == len(data) and r.obj_sha256 == hashlib.sha256(data).hexdigest()
        mesh = o3d.io.read_triangle_mesh(str(obj), enable_post_processing=False)
        assert r.n_faces == len(mesh.triangles)
        assert r.n_vertices == len(np.unique(np.asarray(mesh.vertices), axis=0))
        mtl = obj.with_suffix(".mtl").read_text()
        assert r.textures == [l.split()[1] for l in mtl.splitlines() if l.startswith("map_Kd")]
        assert r.textures_missing == [] and r.problems == []
        assert r.n_materials == mtl.count("newmtl") and r.n_transparent == mtl.count("\nd 0.3\n")
        assert r.split == spec.assign(r.model_id)
    names = {r.synset_id: r.category for r in rows}
    assert names["03001627"] == "chair" and names["02691156"] == "airplane"
    # The CSV round-trips and is plain: pandas-free csv reading sees the documented columns.
    assert [vars(r) for r in read_manifest(out)] == [vars(r) for r in sorted(rows, key=lambda r: r.key)]
    with open(out, newline="") as fh:
        assert next(csv.reader(fh)) == COLUMNS
    text = "\n".join(summary_lines(result))
    assert "chair" in text and "Problems: none" in text and str(out) in text


def test_category_filter_and_round_robin_limit(synth_tree):
    rows = scan(synth_tree, categories=["chair", "04379243"], show_progress=False).rows
    assert sorted({r.synset_id for r in rows}) == ["03001627", "04379243"] and len(rows) == 6
    rows = scan(synth_tree, limit=5, show_progress=False).rows
    assert len(rows) == 5 and len({r.synset_id for r in rows}) == 5
    rows = scan(synth_tree, limit=10, show_progress=False).rows
    assert len(rows) == 10 and len({r.synset_id for r in rows}) == 8
    with pytest.raises(CmaError, match="no objects.*bathtub"):
        scan(synth_tree, categories=["bathtub"], show_progress=False)


@pytest.mark.process  # the scan's own process pool
def test_parallel_scan_equals_serial(tmp_path):
    from cma_builder.source.synth import synthesize

    root = tmp_path / "big"
    synthesize(root, per_category=8, seed=2, show_progress=False)  # 64 models: the process-pool path
    serial = scan(root, workers=1, show_progress=False).rows
    parallel = scan(root, workers=2, show_progress=False).rows
    assert len(serial) == 64 and [vars(r) for r in serial] == [vars(r) for r in parallel]


def first_model(tree: Path, synset: str) -> Path:
    return sorted((tree / synset).iterdir())[0]


def test_broken_models_become_rows_and_the_rest_are_fine(tree_copy, tmp_path):
    broken = {}

    def obj_of(synset, k=0):
        d = sorted((tree_copy / synset).iterdir())[k]
        return d, d / "models" / "model_normalized.obj"

    d, obj = obj_of("02691156")  # truncated mid-line
    data = obj.read_bytes()
    obj.write_bytes(data[: int(len(data) * 0.6)])
    broken[d.name] = ("error", "obj_truncated")
    d, obj = obj_of("02876657")  # truncated at a line boundary: only the declared counts tell
    lines = obj.read_bytes().splitlines(keepends=True)
    obj.write_bytes(b"".join(lines[: len(lines) - 40]))
    broken[d.name] = ("error", "obj_truncated")
    d, obj = obj_of("02958343")
    obj.write_bytes(b"")
    broken[d.name] = ("error", "obj_empty")
    d, obj = obj_of("03001627")
    lines = obj.read_text().splitlines(keepends=True)
    first_v = next(i for i, l in enumerate(lines) if l.startswith("v "))
    lines[first_v] = "v nan 0 0\n"
    obj.write_text("".join(lines))
    broken[d.name] = ("error", "obj_nonfinite")
    d, obj = obj_of("03636649")
    obj.write_text(obj.read_text() + "f 1/1/1 2/1/1 99999/1/1\n")
    broken[d.name] = ("error", "obj_bad_index")
    d, obj = obj_of("03797390")
    obj.unlink()
    broken[d.name] = ("error", "obj_missing")
    d, obj = obj_of("04256520")
    obj.with_suffix(".mtl").unlink()
    broken[d.name] = ("warn", "mtl_missing")
    d, obj = obj_of("04379243")
    obj.with_suffix(".json").unlink()
    broken[d.name] = ("warn", "json_missing")
    # A model whose texture is gone.
    textured = sorted(tree_copy.glob("*/*/images/texture0.jpg"))
    victim = next(t for t in textured if t.parents[1].name not in broken)
    victim.unlink()
    broken[victim.parents[1].name] = ("warn", "texture_missing")

    out = tmp_path / "manifest.csv"
    proc = run_cli("cma-build", "scan", "--shapenet", str(tree_copy), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = by_id(read_manifest(out))
    assert len(rows) == 24
    for mid, (status, code) in broken.items():
        assert rows[mid].status == status, (code, rows[mid])
        assert any(p.startswith(code + ":") for p in rows[mid].problems), (code, rows[mid].problems)
        assert mid in proc.stdout  # the problem list names the model
    assert rows[victim.parents[1].name].textures_missing == ["../images/texture0.jpg"]
    assert all(r.status == "ok" for mid, r in rows.items() if mid not in broken)
    assert "Problems: 6 objects with errors, 3 with warnings" in proc.stdout


def test_tree_without_taxonomy_json_uses_bundled_names(tree_copy):
    (tree_copy / "taxonomy.json").unlink()
    result = scan(tree_copy, show_progress=False)
    assert {r.category for r in result.rows} == {"airplane", "bottle", "car", "chair", "lamp", "mug", "sofa", "table"}
    assert "bundled" in result.source.tree.taxonomy.source


def test_unknown_synset_folder_is_scanned_and_labeled_unknown(tree_copy):
    shutil.copytree(first_model(tree_copy, "03797390"), tree_copy / "99999999" / "abc")
    rows = scan(tree_copy, show_progress=False).rows
    assert [r.category for r in rows if r.synset_id == "99999999"] == ["unknown"]


@pytest.mark.parametrize("make_path, expected", [
    (lambda t: t / "does-not-exist", "no such folder"),
    (lambda t: t / "file.txt", "is a file"),
    (lambda t: t / "empty", "no 8-digit synset folders"),
    (lambda t: t / "ShapeNetCore.v2.zip", "zip archive"),
])
def test_bad_roots_fail_with_one_line_and_exit_2(tmp_path, make_path, expected):
    (tmp_path / "file.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes").mkdir()
    (tmp_path / "ShapeNetCore.v2.zip").write_bytes(b"PK")
    path = make_path(tmp_path)
    proc = run_cli("cma-build", "scan", "--shapenet", str(path), "--out", str(tmp_path / "m.csv"))
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and expected in err
    assert "Traceback" not in proc.stderr and not (tmp_path / "m.csv").exists()


def test_bad_category_keeps_the_previous_manifest(synth_tree, tmp_path):
    out = tmp_path / "manifest.csv"
    assert run_cli("cma-build", "scan", "--shapenet", str(synth_tree), "--out", str(out)).returncode == 0
    before = out.read_bytes()
    proc = run_cli("cma-build", "scan", "--shapenet", str(synth_tree), "--out", str(out), "--categories", "chiar")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "unknown category 'chiar'" in proc.stderr and "chair" in proc.stderr
    assert out.read_bytes() == before
    foreign = tmp_path / "notes.csv"
    foreign.write_text("my,own,data\n")
    proc = run_cli("cma-build", "scan", "--shapenet", str(synth_tree), "--out", str(foreign))
    assert proc.returncode == 2 and "not a cma-build manifest" in proc.stderr
    assert foreign.read_text() == "my,own,data\n"


def test_manifest_write_is_atomic(synth_tree, tmp_path, monkeypatch):
    out = tmp_path / "manifest.csv"
    rows = scan(synth_tree, out, show_progress=False).rows
    before = out.read_bytes()

    calls = {"n": 0}
    real_cell = manifest_mod._cell

    def failing_cell(value):
        calls["n"] += 1
        if calls["n"] > 100:
            raise OSError(28, "No space left on device")
        return real_cell(value)

    monkeypatch.setattr(manifest_mod, "_cell", failing_cell)
    with pytest.raises(OSError):
        write_manifest(rows, out)
    assert out.read_bytes() == before  # the old manifest is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]  # no temp file left


@pytest.mark.parametrize("make_out, expected", [
    (lambda t: Path("/proc/m.csv"), "--out /proc/m.csv: cannot write in /proc"),
    (lambda t: Path("/sys/m.csv"), "--out /sys/m.csv: cannot write in /sys"),  # EACCES even for root
    (lambda t: t / "afile" / "m.csv", "cannot create its folder"),
    (lambda t: t, "is a folder"),
])
def test_unwritable_manifest_is_named_before_the_scan(synth_tree, tmp_path, make_out, expected):
    """The path the user gave (never our hidden temporary file), before any model is inspected."""
    (tmp_path / "afile").write_text("x")
    out = make_out(tmp_path)
    proc = run_cli("cma-build", "scan", "--shapenet", str(synth_tree), "--out", str(out))
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err and str(out) in err and ".tmp" not in err, err
    assert proc.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_the_manifest_folder_is_created_after_the_scan(synth_tree, tmp_path):
    out = tmp_path / "new" / "sub" / "m.csv"
    proc = run_cli("cma-build", "scan", "--shapenet", str(tmp_path / "nope"), "--out", str(out))
    assert proc.returncode == 2 and "no such folder" in proc.stderr and not any(tmp_path.iterdir())  # the input first
    proc = run_cli("cma-build", "scan", "--shapenet", str(synth_tree), "--out", str(out), "--limit", "2")
    assert proc.returncode == 0 and len(read_manifest(out)) == 2, proc.stderr


@pytest.mark.parametrize("workers", [0, -4])
def test_scan_refuses_no_workers(synth_tree, tmp_path, workers):
    proc = run_cli("cma-build", "scan", "--shapenet", str(synth_tree), "--out", str(tmp_path / "m.csv"),
                   "--workers", str(workers))
    assert proc.returncode == 2 and proc.stderr.strip() == f"Error: --workers must be at least 1, got {workers}"
    assert not any(tmp_path.iterdir())
    with pytest.raises(CmaError, match="--workers must be at least 1"):
        scan(synth_tree, workers=workers, show_progress=False)


def test_atomic_write_names_the_target_not_its_temporary_file(tmp_path):
    from cma_builder.atomic import atomic_write

    with pytest.raises(OSError) as info:
        with atomic_write("/proc/m.csv") as fh:
            fh.write("x")
    assert info.value.filename == "/proc/m.csv"
    with pytest.raises(FileNotFoundError) as info:  # the same kind of error as before, for callers that catch it
        with atomic_write(tmp_path / "gone" / "m.csv") as fh:
            fh.write("x")
    assert info.value.filename == str(tmp_path / "gone" / "m.csv")


def test_output_checks_change_nothing(tmp_path):
    from cma_builder.atomic import check_output_dir, check_output_file

    (tmp_path / "afile").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert check_output_file(tmp_path / "new.json", "--json") == tmp_path / "new.json"
    assert check_output_file(tmp_path / "afile") == tmp_path / "afile"  # an existing file is replaced
    assert check_output_file(tmp_path / "x" / "y" / "r.json") == tmp_path / "x" / "y" / "r.json"  # created later
    assert check_output_dir(tmp_path / "a" / "b" / "c", "--out") == tmp_path / "a" / "b" / "c"  # created later
    assert check_output_dir(tmp_path) == tmp_path
    for call, message in [
        (lambda: check_output_file(tmp_path, "--json", "s.json"), f"--json {tmp_path}: is a folder; expected a file "
                                                                  f"name such as {tmp_path / 's.json'}"),
        (lambda: check_output_file("/dev/null", "--report"), "--report /dev/null: exists and is not a regular file"),
        (lambda: check_output_file(tmp_path / "afile" / "r.json"), f"its folder, {tmp_path / 'afile'} is not a folder"),
        (lambda: check_output_file("/proc/x.json", "--report"), "--report /proc/x.json: cannot write in /proc ("),
        (lambda: check_output_dir(tmp_path / "afile", "--out"), "is a file; expected a folder"),
        (lambda: check_output_dir(tmp_path / "afile" / "sub"), f"the folder, {tmp_path / 'afile'} is not a folder"),
        (lambda: check_output_dir("/proc/x/y", "--out"), "--out /proc/x/y: cannot write in /proc ("),
        (lambda: check_output_dir("/sys/x"), "/sys/x: cannot write in /sys ("),
    ]:
        with pytest.raises(CmaError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the write test left nothing behind
