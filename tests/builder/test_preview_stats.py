"""cma-build preview (PNG sheets read back pixel by pixel) and cma-build stats on a real render."""

import json
import re
import os
import shutil

import numpy as np
import zarr
from PIL import Image

from conftest import index_rows, load, run_cli
from cma_builder.checks.rules import _dilate
from cma_builder.checks.drawing import upscale


def preview(ds, out, *extra):
    proc = run_cli("cma-build", "preview", str(ds), "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line.strip() for line in proc.stdout.splitlines() if line.strip().endswith(".png")]


def overlay_on_mask(sheet_path, a) -> tuple[float, float, int]:
    """Colored (overlay) pixels of every 'points' tile mapped back to image pixels: fraction on
    the mask, fraction on the object as the RGB shows it (the mask, plus thin parts that miss
    every pixel center but tint the anti-aliased RGB) grown by one pixel, and how many there are."""
    img = Image.open(sheet_path)
    layout = json.loads(img.text["cma-layout"])
    s = layout["scale"]
    pixels = np.asarray(img.convert("RGB")).astype(np.int16)
    on = near = total = 0
    for k, (x, y, w, h) in zip(layout["views"], layout["panels"]["points"]):
        tile = pixels[y:y + h, x:x + w]
        colored = tile.max(axis=-1) - tile.min(axis=-1) > 24  # the backdrop is exactly gray
        ys, xs = np.nonzero(colored)
        v, u = ys // s, xs // s
        seen = a["mask"][k] | (np.abs(a["rgb"][k].astype(np.int16) - 255).max(axis=-1) > 8)  # white background
        on += a["mask"][k][v, u].sum()
        near += _dilate(seen, 1)[v, u].sum()
        total += len(ys)
    return on / total, near / total, total


def test_preview_sheets_put_the_points_on_the_object(rendered, tmp_path):
    paths = preview(rendered, tmp_path / "pv", "--n", "4")
    assert len(paths) == 5 and paths[-1].endswith("grid.png") and all(os.path.isfile(p) for p in paths)
    rows = {r["model_id"]: r for r in index_rows(rendered)}
    assert len({rows[os.path.basename(p)[:-4].split("_", 1)[1]]["synset_id"] for p in paths[:-1]}) == 4
    for path in paths[:-1]:
        row = rows[os.path.basename(path)[:-4].split("_", 1)[1]]
        a = load(rendered, row)
        img = Image.open(path)
        layout = json.loads(img.text["cma-layout"])
        s, T = layout["scale"], layout["tile"]
        assert T == 64 * s >= 160 and layout["views"] == [0, 1, 2, 3]
        assert set(layout["panels"]) == {"RGB", "depth", "mask", "normal", "points", "cloud"}
        W, H = img.size
        assert W >= 4 * T and H >= 5 * T + 200 and W * H < 4e6  # all rows, readable, not huge
        pixels = np.asarray(img.convert("RGB"))
        for k, (x, y, w, h) in zip(layout["views"], layout["panels"]["RGB"]):
            assert x + w <= W and y + h <= H
            assert (pixels[y:y + h, x:x + w] == upscale(a["rgb"][k], s)).all()  # the RGB, pixel for pixel
        for k, (x, y, w, h) in zip(layout["views"], layout["panels"]["mask"]):
            assert ((pixels[y:y + h, x:x + w, 0] > 127) == upscale(a["mask"][k], s)).all()
        on, near, total = overlay_on_mask(path, a)
        assert total > 0.3 * a["fused_visible"].sum()  # the points are drawn...
        # ...on the object. Exact visibility also keeps points on parts narrower than a pixel,
        # which miss the mask's pixel centers: a few percent off the mask at 64 px.
        assert near > 0.995 and on > 0.9, (row["category"], on, near)
    grid = Image.open(paths[-1])
    assert grid.size[0] >= 128 + 120 and grid.size[1] >= 4 * (128 + 20)  # a row per category


def test_a_wrong_camera_shows_in_the_preview(rendered, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(rendered, ds)
    row = index_rows(ds)[2]
    group = zarr.open_group(ds / "shards" / row["shard"], mode="r+")
    K = group["K"][int(row["row"])]
    K[:, :2, :2] *= 1.15
    group["K"][int(row["row"])] = K
    (path,) = preview(ds, tmp_path / "pv", "--objects", row["model_id"])[:-1]
    on, near, _ = overlay_on_mask(path, load(ds, row))
    assert near < 0.97, near  # points spill off the object


def test_preview_bad_input_is_one_line(rendered, tmp_path):
    for args, message in [(("--objects", "nope"), "not among the 8 rendered objects"), (("--n", "0"), "--n must be")]:
        proc = run_cli("cma-build", "preview", str(rendered), "--out", str(tmp_path / "pv"), *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "file").write_text("x")
    proc = run_cli("cma-build", "preview", str(rendered), "--out", str(tmp_path / "file"))
    assert proc.returncode == 2 and "is a file" in proc.stderr


def test_stats_counts_bytes_and_points(rendered, tmp_path):
    proc = run_cli("cma-build", "stats", str(rendered), "--json", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    rows = index_rows(rendered)
    s = json.loads((tmp_path / "s.json").read_text())
    assert sum(c["done"] for c in s["objects"].values()) == 8
    assert sum(c.get(sp, 0) for c in s["objects"].values() for sp in ("train", "val", "test")) == 8
    for r in rows:
        assert s["objects"][r["category"]][r["split"]] >= 1
    on_disk = sum(f.stat().st_size for d in (rendered / "shards").iterdir() if d.is_dir()
                  for f in d.rglob("*") if f.is_file())
    assert s["bytes_total"] == on_disk and abs(s["bytes_per_object"] * 8 - on_disk) < 1
    fg = np.concatenate([zarr.open_group(rendered / "shards" / name, mode="r")["view_foreground"][:].ravel()
                         for name in sorted({r["shard"] for r in rows})])
    assert s["view_foreground"]["median"] == float(np.median(fg)) and s["view_foreground"]["max"] == fg.max()
    assert re.search(r"^total +8 ", proc.stdout, re.M) and "Failures: none" in proc.stdout


def test_stats_checks_its_json_path_before_the_work(rendered, tmp_path):
    """Not after printing the whole summary: nothing on stdout, one line on stderr, exit 2."""
    (tmp_path / "afile").write_text("x")
    for target, message in [("/proc/x.json", "--json /proc/x.json: cannot write in /proc ("),
                            ("/dev/null", "--json /dev/null: exists and is not a regular file"),
                            (str(tmp_path), f"--json {tmp_path}: is a folder; expected a file name such as"),
                            (str(tmp_path / "afile" / "s.json"), f"its folder, {tmp_path / 'afile'} is not a folder")]:
        proc = run_cli("cma-build", "stats", str(rendered), "--json", target)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and message in err and proc.stdout == "", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    proc = run_cli("cma-build", "stats", str(rendered), "--json", str(tmp_path / "new" / "s.json"))
    assert proc.returncode == 0 and json.loads((tmp_path / "new" / "s.json").read_text())["shards"] >= 1


def test_preview_checks_its_numbers_and_folder_before_the_work(rendered, tmp_path):
    (tmp_path / "afile").write_text("x")
    for args, message in [(("--out", "/proc/pv"), "--out /proc/pv: cannot write in /proc ("),
                          (("--out", str(tmp_path / "afile" / "pv")), f"{tmp_path / 'afile'} is not a folder"),
                          (("--out", str(tmp_path / "pv"), "--seed", "-1"), "--seed must be at least 0, got -1"),
                          (("--out", str(tmp_path / "pv"), "--max-views", "0"), "--max-views must be at least 1"),
                          (("--out", str(tmp_path / "pv"), "--n", "-2"), "--n must be at least 1, got -2")]:
        proc = run_cli("cma-build", "preview", str(rendered), *args)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_text_is_wrapped_to_the_strip_never_cut():
    from cma_builder.checks.drawing import font, text_image, wrap

    line = "split train   shard 20261202-011338-vm-22627-243db2-00001 row 0   224x224 px, 12 views (ring)"
    lines = wrap([line, "short"], 300, 16)
    assert len(lines) > 2 and lines[-1] == "short" and all(font(16).getlength(t) <= 300 for t in lines)
    assert lines[0] == "split train"  # broken at the field separators first
    assert wrap(["x" * 80], 100, 16) == ["x" * len(t) for t in wrap(["x" * 80], 100, 16)]  # a long word: by letters
    img = text_image([line], 300, size=16)
    assert img.shape[0] > text_image(["short"], 300, size=16).shape[0]  # grew downwards...
    assert (img[:, -4:] == 255).all()  # ...and nothing touches the right edge


def test_preview_header_fits_the_sheet(rendered, tmp_path):
    """One view per sheet makes the narrowest sheet: the header used to run off its right edge."""
    for extra in ((), ("--max-views", "1")):
        out = tmp_path / f"pv{len(extra)}"
        sheet = preview(rendered, out, "--n", "1", *extra)[0]
        img = Image.open(sheet)
        layout = json.loads(img.text["cma-layout"])
        top = layout["panels"]["RGB"][0][1]  # the header and the view labels are above the first tile
        margin = np.asarray(img.convert("RGB"))[:top, -6:]
        assert ((margin == 255) | (margin == 200)).all()  # white, or the gray rule under the header: no text
