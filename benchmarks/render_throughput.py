"""Render throughput: persistent Blender workers against one Blender process per object.

Both sides run the same render code on the same objects with the same settings and the same
number of worker slots; the naive baseline just starts a fresh Python + bpy process (scene set
up from scratch) for every object, as a per-object `blender --background --python` script would.
Prints objects/min, the split of worker-slot time (Blender render calls, import/setup, EXR
decoding, visibility ray casting, back-projection + FPS, shard writing, and the rest: process start-up, IPC, idle) and
the ratio.

    python benchmarks/render_throughput.py                              # 8 mini-ShapeNet objects, 224 px, 12 views
    python benchmarks/render_throughput.py --resolution 64 --views 4 --samples 8 --objects 16
    python benchmarks/render_throughput.py --objects 8 --rounds 3         # alternating, against machine drift
    python benchmarks/render_throughput.py --shapenet ~/data/ShapeNetCore.v2 --objects 32 --workers 8
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from _common import render_parser, source_tree, work_dir
from cma_builder.geometry.cameras import ViewpointSpec
from cma_builder.render.driver import render
from cma_builder.render.settings import RenderOptions, RenderSettings, threads_per_worker

STAGES = ("render", "setup", "decode", "raycast", "backproject", "write")


def run(tree: Path, out: Path, settings: RenderSettings, options: RenderOptions, objects: int) -> dict:
    start = time.perf_counter()
    summary = render(tree, out, settings, options, limit=objects, show_progress=False)
    wall = time.perf_counter() - start
    return {"wall": wall, "slots": wall * options.workers, "done": summary.counts["done"],
            "failed": summary.counts["failed"] + summary.counts["skipped"],
            "stages": {s: summary.timings.get(s, 0.0) for s in STAGES}}


def combine(runs: list[dict]) -> dict:
    wall = sum(r["wall"] for r in runs)
    slots = sum(r["slots"] for r in runs)
    done = sum(r["done"] for r in runs)
    split = {s: sum(r["stages"][s] for r in runs) / slots for s in STAGES}
    split["other"] = max(0.0, 1.0 - sum(split.values()))
    return {"wall": wall, "done": done, "failed": sum(r["failed"] for r in runs), "per_min": done / wall * 60.0,
            "split": split}


def main() -> None:
    ap = render_parser(__doc__, objects=8, resolution=224, views=12, samples=32)
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--rounds", type=int, default=1, help="alternate the two methods this many times each")
    args = ap.parse_args()

    work = work_dir("render-bench-")
    tree = source_tree(args.shapenet, work, -(-args.objects // 8))
    settings = RenderSettings(resolution=args.resolution, viewpoints=ViewpointSpec("ring", args.views), samples=args.samples)
    threads = threads_per_worker(os.cpu_count() or 1, args.workers)
    common = dict(workers=args.workers, device=args.device, threads_per_worker=threads, shard_size=16)
    methods = {"persistent workers": RenderOptions(**common),
               "one process per object": RenderOptions(recycle_after=1, **common)}
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    for r in range(args.rounds):  # alternate the order so that slow spells of the machine hit both
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for name in order:
            runs[name].append(run(tree, work / f"{name.split()[0]}-{r}", settings, methods[name], args.objects))
    results = {name: combine(rs) for name, rs in runs.items()}
    print(f"{args.objects} objects x {args.rounds} rounds from {tree}; {args.resolution}x{args.resolution} px, {args.views} views, "
          f"{args.samples} samples, {args.workers} workers x {threads} threads, device {args.device}")
    header = f"{'method':<24} {'wall s':>8} {'obj/min':>8}" + "".join(f" {s:>11}" for s in (*STAGES, "other"))
    print(header)
    for name, r in results.items():
        cells = "".join(f" {r['split'][s]:>10.1%}" for s in (*STAGES, "other"))
        note = f"  ({r['failed']} failed)" if r["failed"] else ""
        print(f"{name:<24} {r['wall']:>8.1f} {r['per_min']:>8.2f}{cells}{note}")
    overhead = 1.0 - results["persistent workers"]["split"]["render"]
    print(f"non-render overhead of persistent workers (all but Blender's render calls): {overhead:.1%}")
    raycast = sum(r["stages"]["raycast"] for r in runs["persistent workers"])
    done = results["persistent workers"]["done"]
    print(f"of which exact visibility (building the ray-casting scene, casting every fused point x view): "
          f"{results['persistent workers']['split']['raycast']:.1%}, {raycast / max(1, done):.3f} s per object")
    ratio = results["persistent workers"]["per_min"] / results["one process per object"]["per_min"]
    print(f"ratio (persistent / one process per object): {ratio:.2f}x objects/min")
    if args.rounds > 1:
        per_round = [a["done"] / a["wall"] / (b["done"] / b["wall"]) for a, b in
                     zip(runs["persistent workers"], runs["one process per object"])]
        print("per round: " + ", ".join(f"{x:.2f}x" for x in per_round) + f"; median {np.median(per_round):.2f}x")
    print("split = share of worker-slot time (wall x workers); 'other' = process start-up, IPC, driver, idle")


if __name__ == "__main__":
    main()
