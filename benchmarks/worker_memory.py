"""Worker memory over a long run: resident memory (RSS) of persistent Blender workers after
each object, with recycling off, compared with the same workers early in the same run.

    python benchmarks/worker_memory.py                      # 200 mini-ShapeNet objects, 96 px, 6 views
    python benchmarks/worker_memory.py --shapenet ~/data/ShapeNetCore.v2 --objects 500
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from _common import source_tree, work_dir
from cma_builder.cameras import ViewpointSpec
from cma_builder.render import render
from cma_builder.settings import RenderOptions, RenderSettings, default_workers, threads_per_worker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapenet", type=Path, help="ShapeNetCore.v2 root (default: a synthesized mini-ShapeNet)")
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--workers", type=int, default=default_workers(os.cpu_count() or 1))
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--samples", type=int, default=8)
    args = ap.parse_args()
    work = work_dir("cma-memory-")
    root = source_tree(args.shapenet, work, -(-args.objects // 8), seed=1)
    settings = RenderSettings(resolution=args.resolution, viewpoints=ViewpointSpec(views=args.views),
                              samples=args.samples, view_points=1024, fused_points=4096)
    options = RenderOptions(workers=args.workers, threads_per_worker=threads_per_worker(os.cpu_count() or 1, args.workers),
                            recycle_after=10**9, max_rss_mb=10**9)
    summary = render(root, work / "ds", settings, options, limit=args.objects, show_progress=True)
    per_worker: dict[str, list[float]] = defaultdict(list)
    for log in sorted((work / "ds" / "log").glob("*.jsonl")):
        for line in log.read_text().splitlines():  # completion order
            rec = json.loads(line)
            if rec["status"] == "done" and rec.get("worker_rss_mb"):
                per_worker[rec["worker"]].append(float(rec["worker_rss_mb"]))
    print(f"{summary.counts['done']} objects, {args.workers} workers, recycling off")
    print("| worker | objects | RSS after 10 (MB) | after half (MB) | at the end (MB) | end / after 10 | slope MB per 100 objects (2nd half) |")
    print("|---|---|---|---|---|---|---|")
    for name, rss in sorted(per_worker.items()):
        n = len(rss)
        half = rss[n // 2:]
        slope = np.polyfit(np.arange(len(half)), half, 1)[0] * 100 if len(half) > 2 else float("nan")
        print(f"| {name.split(' ')[0]} | {n} | {rss[min(9, n - 1)]:.0f} | {rss[n // 2]:.0f} | {rss[-1]:.0f} | "
              f"{rss[-1] / rss[min(9, n - 1)]:.2f} | {slope:+.1f} |")


if __name__ == "__main__":
    main()
