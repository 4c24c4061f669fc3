"""Collection scan at scale: a 100,000-entry Objaverse layout (hard links to a few real GLBs),
scanned by `cma-build scan` (no Blender, streaming rows to the manifest) against a naive scan
that loads every file with trimesh, measured on a sample in the same run and extrapolated.

Prints seconds, objects/s, the ratio, and the peak resident memory of the scan (it holds the
object list, not the rows: compare 10k and 100k entries with --entries).

    python benchmarks/collection_scan.py                        # 100,000 entries, 2 workers
    python benchmarks/collection_scan.py --entries 10000 --glbs ../shared/data/assets-real/glb
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path

from _common import work_dir
from cma_builder.source.scan import scan

SHARED_GLBS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assets-real" / "glb"


def build_layout(root: Path, glbs: list[Path], entries: int) -> Path:
    """hf-objaverse-v1/glbs/000-XXX/<uid>.glb, 1000 per folder, each a hard link to one of ``glbs``."""
    originals = root / "originals"
    originals.mkdir(parents=True)
    copies = [Path(shutil.copy(g, originals / g.name)) for g in glbs]  # same file system as the links
    base = root / "hf-objaverse-v1" / "glbs"
    for i in range(entries):
        folder = base / f"000-{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        os.link(copies[i % len(copies)], folder / f"{i:032x}.glb")
    return root


def naive(paths: list[Path]) -> float:
    """Seconds for trimesh.load of each file (what a first script would do to count triangles)."""
    import trimesh

    t = time.perf_counter()
    for p in paths:
        scene = trimesh.load(str(p), force="scene", process=False)
        sum(len(g.faces) for g in scene.dump(concatenate=False) if hasattr(g, "faces"))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--glbs", type=Path, default=SHARED_GLBS, help="folder of .glb files to link to")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--naive-sample", type=int, default=300)
    args = ap.parse_args()
    glbs = sorted(args.glbs.glob("*.glb"))
    if not glbs:
        raise SystemExit(f"no .glb files in {args.glbs}; pass --glbs FOLDER")
    work = work_dir("cma-collection-scan-")
    try:
        t = time.perf_counter()
        root = build_layout(work / "objaverse", glbs, args.entries)
        print(f"built {args.entries} entries (hard links to {len(glbs)} GLBs) in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        result = scan(root, work / "manifest.csv", workers=args.workers, show_progress=False, keep_rows=False)
        ours = time.perf_counter() - t
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        sample = sorted((root / "hf-objaverse-v1" / "glbs").glob("000-000/*.glb"))[: args.naive_sample]
        base = naive(sample) * args.entries / len(sample)
        assert result.tally.total == args.entries
        print(f"{'method':<40} {'seconds':>9} {'objects/s':>10} {'vs naive':>9}")
        print(f"{'naive: trimesh.load each (extrapolated)':<40} {base:9.1f} {args.entries / base:10.0f} {1.0:8.2f}x")
        print(f"{f'cma-build scan ({args.workers} workers)':<40} {ours:9.1f} {args.entries / ours:10.0f} {base / ours:8.2f}x")
        print(f"peak resident memory of one scan process: {peak:.0f} MB; manifest "
              f"{(work / 'manifest.csv').stat().st_size / 1e6:.1f} MB, {result.tally.total} rows "
              f"({result.tally.errors} errors, {result.tally.warnings} warnings)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
