"""Per-object cost by source format: where a worker's time goes for each format (import and
set-up against rendering), with ShapeNet's OBJ path (a mini-ShapeNet model) as the baseline of
the same run. Renders the real assets of ../shared/data/assets-real (or --assets) as a folder
collection, one worker, and reads each object's timings from index.csv.

    python benchmarks/source_formats.py                          # 128 px, 8 views, 16 samples
    python benchmarks/source_formats.py --resolution 224 --views 12 --samples 32
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import defaultdict
from pathlib import Path

from _common import source_tree, work_dir
from cma_builder.geometry.cameras import ViewpointSpec
from cma_builder.render.driver import render
from cma_builder.render.settings import RenderOptions, RenderSettings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assets-real"
STAGES = ("setup", "render", "decode", "raycast", "backproject")


def timings(ds: Path, group) -> dict[str, list[dict]]:
    out = defaultdict(list)
    with open(ds / "index.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["status"] == "done":
                out[group(row)].append({s: float(row[f"seconds_{s}"]) for s in STAGES})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=Path, default=SHARED, help="a folder of mesh files (any layout)")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--samples", type=int, default=16)
    args = ap.parse_args()
    work = work_dir("cma-source-formats-")
    settings = RenderSettings(resolution=args.resolution, viewpoints=ViewpointSpec("ring", args.views),
                              samples=args.samples, view_points=1024, fused_points=4096)
    options = RenderOptions(workers=1, threads_per_worker=min(2, os.cpu_count() or 1), timeout=300)
    tree = source_tree(None, work, 1)
    render(tree, work / "shapenet", settings, options, show_progress=False)
    render(args.assets, work / "assets", settings, options, show_progress=False, layout="folder")
    rows = timings(work / "shapenet", lambda r: "obj (ShapeNet)")
    rows.update(timings(work / "assets", lambda r: r["format"]))
    base = None
    print(f"{args.resolution} px, {args.views} views, {args.samples} samples, 1 worker; seconds per object (mean)")
    print(f"{'format':<16} {'objects':>7} {'import+setup':>12} {'render':>8} {'other':>8} {'total':>8} "
          f"{'import share':>12} {'vs ShapeNet':>11}")
    for fmt, objs in sorted(rows.items(), key=lambda kv: kv[0] != "obj (ShapeNet)"):
        n = len(objs)
        mean = {s: sum(o[s] for o in objs) / n for s in STAGES}
        total = sum(mean.values())
        base = base or total
        other = total - mean["setup"] - mean["render"]
        print(f"{fmt:<16} {n:>7} {mean['setup']:>12.3f} {mean['render']:>8.3f} {other:>8.3f} {total:>8.3f} "
              f"{mean['setup'] / total:>12.1%} {total / base:>10.2f}x")
    print("import+setup: the file's import, realising its scene, normalisation, the camera rig; other: EXR "
          "decoding, visibility ray casting, back-projection and FPS")


if __name__ == "__main__":
    main()
