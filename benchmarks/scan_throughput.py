"""Scan throughput: `cma-build scan` against a naive line-by-line OBJ check, same models, same run.

The naive baseline is what a first script would do: read each OBJ as text, loop over its
lines, parse every number with float()/int(), and check face indices one by one.

    python benchmarks/scan_throughput.py                      # synthesizes 8 x 8 models
    python benchmarks/scan_throughput.py --shapenet ~/data/ShapeNetCore.v2 --limit 500
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import tempfile
import time
from pathlib import Path

from cma_builder.source.scan import PARALLEL_MIN_MODELS, scan, select_models
from cma_builder.source.shapenet import ShapeNetSource
from cma_builder.source.synth import synthesize


def naive_check(obj: Path) -> tuple[int, int, bool]:
    """(vertices, faces, ok) by plain per-line parsing."""
    data = obj.read_bytes()
    hashlib.sha256(data).hexdigest()
    n_v = n_f = 0
    ok = True
    faces = []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            xyz = [float(x) for x in parts[1:4]]
            ok &= len(xyz) == 3 and all(math.isfinite(x) for x in xyz)
            n_v += 1
        elif parts[0] == "f":
            faces.append([int(c.split("/")[0]) for c in parts[1:]])
            n_f += 1
    for face in faces:
        ok &= all(1 <= i <= n_v or -n_v <= i < 0 for i in face) and len(face) >= 3
    return n_v, n_f, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapenet", type=Path, help="ShapeNetCore.v2 root (default: synthesize a mini-ShapeNet)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    root = args.shapenet
    if root is None:
        root = Path(tempfile.mkdtemp()) / "mini-shapenet"
        synthesize(root, per_category=8, seed=0, show_progress=False)
    source = ShapeNetSource.open(root)
    refs = [r for r in select_models(source, source.present_categories(), args.limit) if r.path.is_file()]
    size = sum(r.path.stat().st_size for r in refs)
    print(f"{len(refs)} models, {size / 1e6:.1f} MB of OBJ under {source.root}")

    for r in refs:  # warm the page cache so both sides read from memory
        r.path.read_bytes()
    t = time.perf_counter()
    for r in refs:
        naive_check(r.path)
    naive = time.perf_counter() - t

    results = {}
    counts = [1] if len(refs) < PARALLEL_MIN_MODELS else sorted({1, args.workers})
    if len(refs) < PARALLEL_MIN_MODELS:
        print(f"(fewer than {PARALLEL_MIN_MODELS} models: scan runs serially, so only 1 process is measured)")
    for workers in counts:
        t = time.perf_counter()
        scan(root, limit=args.limit, workers=workers, show_progress=False)
        results[workers] = time.perf_counter() - t

    print(f"{'method':<34} {'seconds':>8} {'models/s':>9} {'MB/s':>7} {'vs naive':>9}")
    print(f"{'naive per-line parse (1 process)':<34} {naive:8.2f} {len(refs) / naive:9.1f} {size / 1e6 / naive:7.1f} {1.0:8.2f}x")
    for workers, sec in results.items():
        label = f"cma-build scan ({workers} process{'es' if workers > 1 else ''})"
        print(f"{label:<34} {sec:8.2f} {len(refs) / sec:9.1f} {size / 1e6 / sec:7.1f} {naive / sec:8.2f}x")
    print("cma-build scan also checks MTLs, textures and JSON, which the naive baseline skips.")


if __name__ == "__main__":
    main()
