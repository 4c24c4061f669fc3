"""Loader throughput: CmaDataset reading the zarr shards in place against the same samples read
from a raw np.memmap copy of the same arrays (made in this run), for each sample kind, through a
torch DataLoader with 0 and 2 worker processes. Both sides run the same sample code (objects,
rows, views, sampling, normalization, augmentation): the baseline only swaps the array reads.

    python benchmarks/loader_throughput.py                      # renders 16 mini-ShapeNet objects (224 px, 12 views)
    python benchmarks/loader_throughput.py --data DATASET --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import source_tree, work_dir
from pcssl_train.data import Augment, CmaDataset

KINDS = {  # kind: (dataset options, augmentation)
    "fused": ({}, Augment(rotate_deg=180)),
    "view": ({"with_fused": False}, Augment(rotate_deg=180, flip=0.5, brightness=0.4, contrast=0.4, saturation=0.4)),
    "multiview": ({"views": 4}, Augment(rotate_deg=180)),
}


class RawDataset(CmaDataset):
    """CmaDataset whose arrays come from one .npy memmap per array (objects in dataset order)."""

    def __init__(self, raw_dir: Path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.raw_dir = raw_dir
        raw_dir.mkdir(parents=True, exist_ok=True)
        for name in self.required_arrays(self.kind, self.image, self.with_fused):
            path = raw_dir / f"{name}.npy"
            if not path.exists():
                first = CmaDataset._read(self, name, 0)
                mm = np.lib.format.open_memmap(path, "w+", first.dtype, (len(self),) + first.shape)
                for j in range(len(self)):
                    mm[j] = CmaDataset._read(self, name, j)
                mm.flush()
                del mm

    def _mm(self, name: str) -> np.ndarray:
        state = self._state()
        if name not in state:
            state[name] = np.load(self.raw_dir / f"{name}.npy", mmap_mode="r")
        return state[name]

    def _read(self, name, j, view=None):
        return self._mm(name)[j] if view is None else self._mm(name)[j, view]

    def _small(self, name, j):
        return self._mm(name)[j]


def render_dataset(work: Path, objects: int, resolution: int, views: int) -> Path:
    tree = source_tree(None, work, per_category=max(1, objects // 10 + 1))
    out = work / "ds"
    cmd = [str(Path(sys.executable).parent / "cma-build"), "render", "--shapenet", str(tree), "--out", str(out),
           "--limit", str(objects), "--resolution", str(resolution), "--views", str(views), "--samples", "4",
           "--shard-size", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    return out


def rate(ds: CmaDataset, workers: int, seconds: float, batch: int) -> float:
    """Samples per second after the first batch (worker start-up excluded)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    it, n, start = iter(loader), 0, None
    while True:
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        if start is None:
            start = time.perf_counter()
            continue
        n += len(b["index"])
        if time.perf_counter() - start >= seconds:
            return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a cma-build dataset (default: render a small one into a temp folder)")
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--objects", type=int, default=16, help="objects to render when --data is not given")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2, help="alternate ours/raw this many times, keep the best")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args()
    work = work_dir("loader-throughput-")
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the raw copies (and the rendered dataset)


def run(args, work: Path) -> None:
    data = args.data or render_dataset(work, args.objects, args.resolution, args.views)
    print(f"dataset {data}, {os.cpu_count()} CPUs, batch {args.batch}, best of {args.rounds} x {args.seconds:g} s")
    print("| kind | workers | ours: samples/s | raw memmap: samples/s | ours/raw |")
    print("|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        opts, aug = KINDS[kind]
        ours = CmaDataset(data, kind=kind, split="all", augment=aug, **opts)
        raw = RawDataset(work / f"raw-{kind}", data, kind=kind, split="all", augment=aug, **opts)
        for workers in (0, 2):
            a = b = 0.0
            for _ in range(args.rounds):  # alternating, best of each: robust to a busy machine
                a = max(a, rate(ours, workers, args.seconds, args.batch))
                b = max(b, rate(raw, workers, args.seconds, args.batch))
            print(f"| {kind} | {workers} | {a:.0f} | {b:.0f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
