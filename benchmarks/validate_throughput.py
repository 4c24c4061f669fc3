"""Validate throughput: `cma-build validate` with N worker processes against one, same dataset,
same checks, same run. Also reports the cost of the independent-geometry checks (--shapenet).

    python benchmarks/validate_throughput.py DATASET --shapenet TREE [--workers 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

from cma_builder.checks.validate import validate


def timed(dataset: str, shapenet: str | None, workers: int, repeat: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        report = validate(dataset, source=shapenet, workers=workers, show_progress=False)
        best = min(best, time.perf_counter() - start)
        n = report.objects_checked
        assert report.passed, "benchmark dataset must validate"
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--shapenet", help="source tree: include the geometry checks")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs")
    args = ap.parse_args()
    rows = []
    for label, shapenet in [("without --shapenet", None), ("with --shapenet", args.shapenet)]:
        if label == "with --shapenet" and not shapenet:
            continue
        one, n = timed(args.dataset, shapenet, 1, args.repeat)
        many, _ = timed(args.dataset, shapenet, args.workers, args.repeat)
        rows.append((label, n, one, many))
    print(f"| checks | objects | 1 process: s (obj/s) | {args.workers} processes: s (obj/s) | ratio |")
    print("|---|---|---|---|---|")
    for label, n, one, many in rows:
        print(f"| {label} | {n} | {one:.2f} ({n / one:.1f}) | {many:.2f} ({n / many:.1f}) | {one / many:.2f}x |")


if __name__ == "__main__":
    main()
