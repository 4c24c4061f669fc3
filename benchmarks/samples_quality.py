"""Seconds per view against Cycles samples (the quality/speed trade-off of --samples).

For each model, renders the same views at each sample count with the real render path
(RGB pass + exact data pass, as `cma-build render` does) and compares the stored 8-bit sRGB
images with a 512-sample reference rendered in the same run: PSNR over the pixels the object
covers. Time ratios are against 32 samples (the default).

    python benchmarks/samples_quality.py                                   # 3 mini-ShapeNet models
    python benchmarks/samples_quality.py --shapenet ~/data/ShapeNetCore.v2 --models 4 --resolution 224
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from _common import frame, source_tree, work_dir
from cma_builder.geometry.cameras import ViewpointSpec
from cma_builder.source.scan import select_models
from cma_builder.render.settings import RenderSettings
from cma_builder.source.shapenet import ShapeNetSource

SAMPLES = (1, 4, 8, 16, 32, 64, 128)
REFERENCE = 512


def render(obj: Path, settings: RenderSettings, scratch: Path) -> tuple[np.ndarray, np.ndarray, float]:
    from blender_scripts.scene import Scene

    scene = Scene(settings, "cpu", 1, scratch)
    scene.load(str(obj))
    w2c, center, radius = frame(scene, settings, obj.parent.parent.name)
    start = time.perf_counter()
    out = scene.render_views(w2c, center, radius)
    seconds = (time.perf_counter() - start) / len(w2c)
    scene.clear()
    return out["rgb"], out["mask"], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapenet", type=Path, help="ShapeNetCore.v2 root (default: a synthesized mini-ShapeNet)")
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=224)
    args = ap.parse_args()
    scratch = work_dir("cma-samples-")
    source = ShapeNetSource.open(source_tree(args.shapenet, scratch, 1))
    refs = select_models(source, source.present_categories(), args.models)
    base = RenderSettings(resolution=args.resolution, viewpoints=ViewpointSpec(views=args.views))
    rows: dict[int, list[tuple[float, float]]] = {s: [] for s in SAMPLES}
    for ref in refs:
        ref_rgb, mask, _ = render(ref.path, dataclasses.replace(base, samples=REFERENCE), scratch)
        for s in SAMPLES:
            rgb, _, seconds = render(ref.path, dataclasses.replace(base, samples=s), scratch)
            err = (rgb[mask].astype(np.float64) - ref_rgb[mask].astype(np.float64)) ** 2
            psnr = 10 * np.log10(255.0 ** 2 / max(err.mean(), 1e-12))
            rows[s].append((seconds, psnr))
    t32 = np.mean([t for t, _ in rows[32]])
    print(f"{len(refs)} models x {args.views} views at {args.resolution} px, 1 thread; PSNR of the 8-bit sRGB object "
          f"pixels against {REFERENCE} samples")
    print("| samples | s/view | time vs 32 | PSNR dB (mean) | PSNR dB (worst model) |")
    print("|---|---|---|---|---|")
    for s in SAMPLES:
        t = np.mean([t for t, _ in rows[s]])
        p = [p for _, p in rows[s]]
        print(f"| {s} | {t:.3f} | {t / t32:.2f}x | {np.mean(p):.1f} | {min(p):.1f} |")


if __name__ == "__main__":
    main()
