"""Worker memory over a long run: resident memory (RSS) of persistent Blender workers after
each object, with recycling off, compared with the same workers early in the same run.

    python benchmarks/worker_memory.py                      # 200 mini-ShapeNet objects, 96 px, 6 views
    python benchmarks/worker_memory.py --shapenet ~/data/ShapeNetCore.v2 --objects 500
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np

from _common import render_parser, source_tree, work_dir
from cma_builder.geometry.cameras import ViewpointSpec
from cma_builder.render.driver import render
from cma_builder.render.settings import RenderOptions, RenderSettings, threads_per_worker


def main() -> None:
    ap = render_parser(__doc__, objects=200, resolution=96, views=6, samples=8)
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
