"""Fidelity of a rendered dataset's images and visibility flags, measured against independent
references: clipping and shading of the RGB, and fused_visible against open3d ray casting of the
source OBJs (with the old 4-pixel depth test, which datasets of format 2 stored, as the baseline).

Per view: the fraction of foreground pixels at >= 250 in all channels (clipped) and the standard
deviation of the foreground RGB values (flat white blobs score < 1). Per (point, view) pair: does
the stored flag agree with the exact rule computed here from the source mesh, and would the
depth test have?

    python benchmarks/image_fidelity.py DATASET --shapenet ~/data/ShapeNetCore.v2
    cma-build render --shapenet ../shared/data/shapenet-real --out /tmp/real && \\
        python benchmarks/image_fidelity.py /tmp/real --shapenet ../shared/data/shapenet-real
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cma_builder.checks.rules import object_values
from cma_builder.render.exposure import SATURATED_LEVEL
from cma_builder.geometry.cameras import project
from cma_builder.geometry.visibility import depth_test_visibility, in_image, segment_visibility
from cma_builder.geometry.raycast import MeshRaycaster
from cma_builder.format.reader import DatasetReader
from cma_builder.source.shapenet import MODEL_OBJ

MIN_FOREGROUND = 200  # views with fewer foreground pixels are not judged on their std


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--shapenet", type=Path, required=True, help="the tree the dataset was rendered from")
    ap.add_argument("--depth-slack", type=float, default=0.01, help="the old depth test's slack (fraction of diagonal)")
    args = ap.parse_args()

    ds = DatasetReader.open(args.dataset)
    tol = ds.settings.visibility_tolerance
    views, worst = [], []
    pairs = {"stored": [0, 0], "depth test": [0, 0]}  # [agree, total]
    per_object = []
    for obj in ds.objects():
        a = ds.load(obj)
        diag = float(a["diagonal"])
        per_view = {(name, k): value for name, k, value, _ in object_values(a, ds.settings)
                    if name in ("images.saturated", "images.rgb_blank")}
        for k in range(a["rgb"].shape[0]):
            n, sat, std = int(a["mask"][k].sum()), per_view["images.saturated", k], per_view["images.rgb_blank", k]
            views.append((n, sat, std))
            worst.append((std, sat, obj.key, obj.category, k, n))
        m = int(a["fused_point_count"])
        pts = a["fused_points"][:m].astype(np.float64)
        mesh = MeshRaycaster.from_obj(str(args.shapenet / obj.synset_id / obj.model_id / MODEL_OBJ))
        H, W = a["depth"].shape[1:]
        _, exact = segment_visibility(pts, a["K"], a["world_to_cam"], H, W, mesh.first_hit, tol * diag)
        _, old = depth_test_visibility(pts, a["depth"], a["mask"], a["K"], a["world_to_cam"], args.depth_slack * diag)
        pix, z = project(pts, a["K"], a["world_to_cam"])
        old &= in_image(pix, z, H, W)
        stored = a["fused_visible"][:m]
        agree = float((stored == exact).mean())
        per_object.append((agree, float((old == exact).mean()), obj.key, obj.category))
        for name, flags in (("stored", stored), ("depth test", old)):
            pairs[name][0] += int((flags == exact).sum())
            pairs[name][1] += exact.size

    fg, sat, std = (np.array(x) for x in zip(*views))
    judged = fg >= MIN_FOREGROUND
    print(f"{ds.root}: {len(per_object)} objects, {len(views)} views, {ds.settings.resolution} px")
    print(f"clipped views (more than half the foreground at >= {SATURATED_LEVEL} in all channels): "
          f"{int((sat > 0.5).sum())}; worst view {sat.max():.2%} clipped, median {np.median(sat):.2%}")
    print(f"views with >= {MIN_FOREGROUND} foreground pixels: {int(judged.sum())}; foreground std < 2 levels: "
          f"{int((std[judged] < 2).sum())}; lowest {std[judged].min():.2f}, median {np.median(std[judged]):.2f}")
    for s, sa, key, cat, k, n in sorted(worst)[:3]:
        print(f"  lowest std: {key} ({cat}) view {k}: std {s:.2f}, {sa:.2%} clipped, {n} foreground pixels")
    for name, (ok, total) in pairs.items():
        print(f"fused_visible ({name}) agrees with open3d ray casting on {ok / total:.4%} of {total} (point, view) pairs")
    agree, old, key, cat = min(per_object)
    print(f"  worst object: {key} ({cat}): stored {agree:.4%}, depth test {old:.4%}")
    print("  worst object for the depth test: " + "{2} ({3}): {1:.4%}".format(*min(per_object, key=lambda r: r[1])))


if __name__ == "__main__":
    main()
