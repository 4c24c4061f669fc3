"""Does a persistent Blender worker slow down as it renders more objects? One process renders
the same objects three times in a row (with every other object in between); prints each
object's render time per pass and the ratio of the last pass to the first (1.00 = no slowdown).
Single process, single thread: free of the noise of concurrent workers.

    python benchmarks/persistent_stability.py                    # 8 mini-ShapeNet objects, 224 px, 4 views
    python benchmarks/persistent_stability.py --shapenet ~/data/ShapeNetCore.v2 --objects 16 --passes 4
"""

from __future__ import annotations

import time

import numpy as np

from _common import frame, render_parser, source_tree, work_dir
from cma_builder.geometry.cameras import ViewpointSpec
from cma_builder.source.scan import select_models
from cma_builder.render.settings import RenderSettings
from cma_builder.source.shapenet import ShapeNetSource


def main() -> None:
    ap = render_parser(__doc__, objects=8, resolution=224, views=4, samples=32, workers=False)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    scratch = work_dir("cma-stability-")
    source = ShapeNetSource.open(source_tree(args.shapenet, scratch, -(-args.objects // 8)))
    refs = select_models(source, source.present_categories(), args.objects)
    settings = RenderSettings(resolution=args.resolution, samples=args.samples, viewpoints=ViewpointSpec(views=args.views))
    from blender_scripts.scene import Scene

    scene = Scene(settings, "cpu", 1, scratch)
    times = np.zeros((args.passes, len(refs)))
    for p in range(args.passes):
        for i, ref in enumerate(refs):
            scene.load(str(ref.path))
            w2c, center, radius = frame(scene, settings, ref.object_id)
            start = time.perf_counter()
            scene.render_views(w2c, center, radius)
            times[p, i] = time.perf_counter() - start
            scene.clear()
    print(f"{len(refs)} objects x {args.passes} passes in one worker, {args.resolution} px, {args.views} views, "
          f"{args.samples} samples, 1 thread")
    print("| object | " + " | ".join(f"pass {p + 1} s" for p in range(args.passes)) + " | last / first |")
    print("|---|" + "---|" * args.passes + "---|")
    for i, ref in enumerate(refs):
        print(f"| {ref.category} | " + " | ".join(f"{t:.2f}" for t in times[:, i])
              + f" | {times[-1, i] / times[0, i]:.3f} |")
    print("| all | " + " | ".join(f"{t:.2f}" for t in times.sum(axis=1)) + f" | {times[-1].sum() / times[0].sum():.3f} |")


if __name__ == "__main__":
    main()
