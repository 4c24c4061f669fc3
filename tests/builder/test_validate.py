"""cma-build validate on real renders: passes on fresh output, and fails naming the object and
the check on copies broken in each way the issue lists."""

import json
import shutil

import numpy as np
import pytest
import zarr

from conftest import REPO, index_rows, render, run_cli
from cma_builder.checks.rules import CHECKS
from cma_builder.checks.validate import _fmt


def validate(ds, *extra):
    return run_cli("cma-build", "validate", str(ds), *extra)


def test_fresh_render_passes_every_check(rendered, synth_tree, tmp_path):
    report_path = tmp_path / "report.json"
    proc = validate(rendered, "--shapenet", str(synth_tree), "--report", str(report_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout and f"Report: {report_path}" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["objects_checked"] == 8 and report["geometry_checked"]
    assert report["failures"] == []
    for name, check in report["checks"].items():
        assert check["count"] > 0, name  # every check ran, geometry included
        assert check["failed"] == 0 and len(check["offenders"]) <= 5
    # The numbers behind the pass: maps exact to float precision, geometry to ~1e-5 of the diagonal.
    assert report["checks"]["mapping.pixel_error"]["worst"] < 1e-3
    assert report["checks"]["geometry.point_to_mesh"]["worst"] < 1e-4
    assert report["checks"]["geometry.raycast_iou"]["median"] == 1.0


def _break(ds, row, array, fn):
    group = zarr.open_group(ds / "shards" / row["shard"], mode="r+")
    i = int(row["row"])
    group[array][i] = fn(group[array][i])


def _scale_K(K):
    return K * np.array([1.1, 1.1, 1.0])[:, None]  # focal lengths and principal point off by 10%


def _shift_camera(w2c):
    w2c = w2c.copy()
    w2c[:, :3, 3] += 0.02  # 2% of the unit diagonal
    return w2c


BREAKS = {
    "K scaled": ("K", _scale_K, {"mapping.pixel_error", "mapping.fused_pixels"}),
    "world_to_cam shifted": ("world_to_cam", _shift_camera, {"mapping.pixel_error", "mapping.depth_error",
                                                             "cameras.blender"}),
    "pixel map transposed": ("view_pixels", lambda p: p[..., ::-1], {"mapping.pixel_error", "mapping.in_mask"}),
    "depth scaled": ("depth", lambda d: d * 1.05, {"mapping.depth_error", "geometry.raycast_depth"}),
    "visibility inverted": ("fused_visible", lambda v: ~v, {"mapping.visibility", "geometry.visibility"}),
    "visibility all hidden": ("fused_visible", np.zeros_like, {"mapping.visibility", "geometry.visibility"}),
    "rgb washed out": ("rgb", lambda rgb: np.full_like(rgb, 253), {"images.saturated", "images.rgb_blank"}),
}


@pytest.mark.parametrize("how", list(BREAKS))
def test_a_broken_copy_fails_naming_the_object_and_check(rendered, synth_tree, tmp_path, how):
    ds = tmp_path / "ds"
    shutil.copytree(rendered, ds)
    victim = index_rows(ds)[4]
    key = f"{victim['synset_id']}/{victim['model_id']}"
    array, fn, expected = BREAKS[how]
    _break(ds, victim, array, fn)
    proc = validate(ds, "--shapenet", str(synth_tree), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    failed = {f["check"] for f in report["failures"]}
    assert expected <= failed, failed
    assert {f["object"] for f in report["failures"]} == {key}  # only the broken object
    for check in expected:
        assert any(line.startswith(f"  {key}") and check in line for line in proc.stdout.splitlines()), check


def test_a_deleted_shard_fails_naming_its_objects(rendered, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(rendered, ds)
    rows = index_rows(ds)
    shard = rows[0]["shard"]
    shutil.rmtree(ds / "shards" / shard)
    lost = {f"{r['synset_id']}/{r['model_id']}" for r in rows if r["shard"] == shard}
    proc = validate(ds, "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert {f["object"] for f in report["failures"]} == lost
    assert {f["check"] for f in report["failures"]} == {"structure.index"}
    assert report["objects_checked"] == 8 - len(lost)  # the rest are still checked
    for key in lost:
        assert f"{key}" in proc.stdout and f"shard {shard} missing" in proc.stdout


def test_an_object_missing_from_the_index_and_a_wrong_shape_are_found(rendered, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(rendered, ds)
    lines = (ds / "index.csv").read_text().splitlines()
    dropped = lines.pop(3).split(",")
    (ds / "index.csv").write_text("\n".join(lines) + "\n")
    shard = index_rows(ds)[-1]["shard"]
    group = zarr.open_group(ds / "shards" / shard, mode="r+")
    n = group["K"].shape[0]
    del group["view_foreground"]
    group.create_array("view_foreground", shape=(n, 3), dtype="int32")  # V=4 expected
    report_path = tmp_path / "r.json"
    proc = validate(ds, "--report", str(report_path))
    assert proc.returncode == 1
    fails = json.loads(report_path.read_text())["failures"]
    assert any(f["object"] == f"{dropped[0]}/{dropped[1]}" and f["check"] == "structure.index"
               and "index.csv says" in f["detail"] for f in fails)
    assert any(f["check"] == "structure.arrays" and "view_foreground has shape" in f["detail"] for f in fails)


def test_sample_thresholds_and_bad_input(rendered, tmp_path):
    proc = validate(rendered, "--sample", "3", "--seed", "1", "--report", str(tmp_path / "r.json"), "--workers", "1")
    assert proc.returncode == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["objects_checked"] == 3 and report["sampled"]
    assert report["checks"]["structure.index"]["count"] == 8  # structure: always every object
    # A stricter limit than the data meets fails, and says so.
    proc = validate(rendered, "--threshold", "cameras.outside=1e9", "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 1 and "cameras.outside" in proc.stdout
    listing = validate(".", "--list-checks")
    assert listing.returncode == 0 and all(name in listing.stdout for name in CHECKS)
    for args, message in [(("--threshold", "nope=1"), "unknown check 'nope'"),
                          (("--threshold", "mapping.pixel_error=abc"), "expected CHECK=NUMBER"),
                          (("--sample", "0"), "--sample must be at least 1"),
                          (("--shapenet", str(tmp_path)), "expected a ShapeNetCore.v2 root")]:
        proc = validate(rendered, *args, "--report", str(tmp_path / "r.json"))
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = validate(tmp_path)
    assert proc.returncode == 2 and "not a cma-build dataset" in proc.stderr
    empty = tmp_path / "empty"  # a dataset whose every object failed: no vacuous pass
    empty.mkdir()
    shutil.copy(rendered / "zarr.json", empty)
    (empty / "index.csv").write_text((rendered / "index.csv").read_text().splitlines()[0] + "\n")
    proc = validate(empty)
    assert proc.returncode == 2 and "nothing to validate" in proc.stderr


@pytest.mark.real_shapenet
def test_genuine_shapenet_models_pass(real_shapenet, tmp_path):
    """Every genuine model in ../shared renders and validates against its own OBJ (never copied)."""
    out = tmp_path / "ds"
    proc = render(real_shapenet, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report_path = tmp_path / "r.json"
    proc = validate(out, "--shapenet", str(real_shapenet), "--report", str(report_path))
    assert proc.returncode == 0, proc.stdout
    report = json.loads(report_path.read_text())
    assert report["objects_checked"] == len(index_rows(out)) >= 10 and report["geometry_checked"]


def test_docs_list_every_check_with_its_default_limit():
    text = (REPO / "docs" / "VALIDATION.md").read_text()
    for name, check in CHECKS.items():
        limit = ("<= " if check.bound == "max" else ">= ") + _fmt(check.default) + (f" {check.unit}" if check.unit else "")
        assert f"| `{name}` | {limit} |" in text, name


@pytest.mark.parametrize("report, expected", [
    ("/proc/x.json", "--report /proc/x.json: cannot write in /proc ("),
    ("/sys/x.json", "--report /sys/x.json: cannot write in /sys ("),
    ("/dev/null", "--report /dev/null: exists and is not a regular file"),
    ("{tmp}", "--report {tmp}: is a folder; expected a file name such as {tmp}/report.json"),
    ("{tmp}/afile/r.json", "--report {tmp}/afile/r.json: cannot create its folder, {tmp}/afile is not a folder"),
])
def test_an_unwritable_report_fails_before_the_checks(rendered, tmp_path, report, expected):
    """Not after printing the whole report: nothing on stdout, one line on stderr, exit 2."""
    report, expected = report.format(tmp=tmp_path), expected.format(tmp=tmp_path)
    (tmp_path / "afile").write_text("x")
    before = sorted(p.name for p in rendered.iterdir())
    proc = validate(rendered, "--report", report)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and expected in err and ".tmp" not in err, err
    assert proc.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert sorted(p.name for p in rendered.iterdir()) == before


@pytest.mark.parametrize("args, message", [
    (("--workers", "0"), "--workers must be at least 1, got 0"),
    (("--workers", "-3"), "--workers must be at least 1, got -3"),
    (("--seed", "-1"), "--seed must be at least 0, got -1"),  # was a numpy traceback with --sample
    (("--threshold", "mapping.pixel_error=-0.5"), "the limit must be a finite number >= 0"),
    (("--threshold", "images.saturated=nan"), "the limit must be a finite number >= 0"),
])
def test_impossible_numbers_are_refused(rendered, tmp_path, args, message):
    proc = validate(rendered, "--sample", "2", *args, "--report", str(tmp_path / "r.json"))
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and message in err and proc.stdout == "", err
    assert not any(tmp_path.iterdir())


def test_an_infinite_upper_limit_turns_a_check_off(rendered, tmp_path):
    report = tmp_path / "new" / "r.json"  # its folder is created
    proc = validate(rendered, "--sample", "2", "--threshold", "mapping.pixel_error=inf", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["checks"]["mapping.pixel_error"]["threshold"] == float("inf")
