"""Render throughput: persistent Blender workers against one Blender process per object.

Both sides run the same render code on the same objects with the same settings and the same
number of worker slots; the naive baseline just starts a fresh Python + bpy process (scene set
up from scratch) for every object, as a per-object `blender --background --python` script would.
Prints objects/min, the split of worker-slot time (Blender render calls, import/setup,
back-projection + FPS, shard writing, and the rest: process start-up, IPC, idle) and the ratio.

    python benchmarks/render_throughput.py                              # 8 mini-ShapeNet objects, 224 px, 12 views
    python benchmarks/render_throughput.py --resolution 64 --views 4 --samples 8 --objects 16
    python benchmarks/render_throughput.py --shapenet ~/data/ShapeNetCore.v2 --objects 32 --workers 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cma_builder.cameras import ViewpointSpec
from cma_builder.render import render
from cma_builder.settings import RenderOptions, RenderSettings
from cma_builder.synth import synthesize

STAGES = ("render", "setup", "backproject", "write")


def run(tree: Path, out: Path, settings: RenderSettings, options: RenderOptions, objects: int) -> dict:
    start = time.perf_counter()
    summary = render(tree, out, settings, options, limit=objects, show_progress=False)
    wall = time.perf_counter() - start
    slots = wall * options.workers
    split = {s: summary.timings.get(s, 0.0) / slots for s in STAGES}
    split["other"] = max(0.0, 1.0 - sum(split.values()))
    return {"wall": wall, "done": summary.counts["done"], "failed": summary.counts["failed"] + summary.counts["skipped"],
            "per_min": summary.counts["done"] / wall * 60.0, "split": split}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapenet", type=Path, help="ShapeNetCore.v2 root (default: a synthesized mini-ShapeNet)")
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="render-bench-"))
    tree = args.shapenet
    if tree is None:
        tree = work / "mini-shapenet"
        synthesize(tree, per_category=max(1, -(-args.objects // 8)), seed=0, show_progress=False)
    settings = RenderSettings(resolution=args.resolution, viewpoints=ViewpointSpec("ring", args.views), samples=args.samples)
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    common = dict(workers=args.workers, device=args.device, threads_per_worker=threads, shard_size=16)
    results = {
        "persistent workers": run(tree, work / "persistent", settings, RenderOptions(**common), args.objects),
        "one process per object": run(tree, work / "naive", settings, RenderOptions(recycle_after=1, **common),
                                      args.objects),
    }
    print(f"{args.objects} objects from {tree}; {args.resolution}x{args.resolution} px, {args.views} views, "
          f"{args.samples} samples, {args.workers} workers x {threads} threads, device {args.device}")
    header = f"{'method':<24} {'wall s':>8} {'obj/min':>8}" + "".join(f" {s:>11}" for s in (*STAGES, "other"))
    print(header)
    for name, r in results.items():
        cells = "".join(f" {r['split'][s]:>10.1%}" for s in (*STAGES, "other"))
        note = f"  ({r['failed']} failed)" if r["failed"] else ""
        print(f"{name:<24} {r['wall']:>8.1f} {r['per_min']:>8.2f}{cells}{note}")
    ratio = results["persistent workers"]["per_min"] / results["one process per object"]["per_min"]
    print(f"ratio (persistent / one process per object): {ratio:.2f}x objects/min")
    print("split = share of worker-slot time (wall x workers); 'other' = process start-up, IPC, driver, idle")


if __name__ == "__main__":
    main()
