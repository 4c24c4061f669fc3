"""Per object a COLMAP text model with exact correspondences: ``images/`` (RGBA PNG, alpha = mask)
and ``sparse/0/{cameras,images,points3D}.txt``, the layout 3D Gaussian Splatting and most
structure-from-motion tools read (3DGS's text reader accepts PINHOLE only).

COLMAP's camera is ours (x right, y down, z forward; ``QW QX QY QZ TX TY TZ`` = world_to_cam) but
its pixel centers sit at +0.5, so ``cx = K[0, 2] + 0.5``. Every fused point is a 3D point with its
origin pixel's color and reprojection error 0; its track lists the views where it is visible
(``fused_visible``), each observation at ``fused_pixels`` + 0.5.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cma_builder.format import ObjectRef
from cma_builder.exporters import Exporter, register
from cma_builder.exporters.images import point_colors, rotation_to_quaternion, view_name, write_rgba


def _num(x: float) -> str:
    return repr(float(x))  # shortest text that reads back to the same float64


@register
class Colmap(Exporter):
    name = "colmap"
    summary = "<synset>/<model>/: images/ RGBA PNG + sparse/0/ COLMAP text model (cameras, images, points3D with tracks)"
    arrays = ("rgb", "mask", "K", "world_to_cam", "fused_points", "fused_point_count", "fused_origin", "fused_pixels",
              "fused_visible")

    def target(self, obj: ObjectRef) -> str:
        return f"{obj.synset_id}/{obj.model_id}"

    def write(self, obj: ObjectRef, a: dict, path: Path) -> None:
        views, height, width = a["mask"].shape
        n = int(a["fused_point_count"])
        points, visible, pixels = a["fused_points"][:n], a["fused_visible"][:n], a["fused_pixels"][:n]
        colors = point_colors(a["rgb"], a["fused_origin"][:n])
        os.makedirs(path / "images")
        sparse = path / "sparse" / "0"
        os.makedirs(sparse)
        cameras = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
                   f"# Number of cameras: {views}"]
        images = ["# Image list with two lines of data per image:",
                  "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                  f"# Number of images: {views}"]
        tracks: list[list[str]] = [[] for _ in range(n)]
        for k in range(views):
            write_rgba(path / "images" / view_name(k), a["rgb"][k], a["mask"][k])
            K = a["K"][k]
            cameras.append(f"{k + 1} PINHOLE {width} {height} {_num(K[0, 0])} {_num(K[1, 1])} {_num(K[0, 2] + 0.5)} "
                           f"{_num(K[1, 2] + 0.5)}")
            w2c = np.asarray(a["world_to_cam"][k], dtype=np.float64)
            q = rotation_to_quaternion(w2c[:3, :3])
            images.append(f"{k + 1} " + " ".join(_num(x) for x in (*q, *w2c[:3, 3])) + f" {k + 1} {view_name(k)}")
            seen = np.flatnonzero(visible[:, k])
            obs = []
            for j, p in enumerate(seen):
                v, u = pixels[p, k]
                obs.append(f"{_num(u + 0.5)} {_num(v + 0.5)} {p + 1}")
                tracks[p].append(f"{k + 1} {j}")
            images.append(" ".join(obs))  # a POINTS2D line for every image, even an empty one
        pts = ["# 3D point list with one line of data per point:",
               "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
               f"# Number of points: {n}"]
        for p in range(n):
            x, y, z = points[p]
            r, g, b = colors[p]
            pts.append(f"{p + 1} {_num(x)} {_num(y)} {_num(z)} {r} {g} {b} 0 " + " ".join(tracks[p]))
        for name, lines in (("cameras.txt", cameras), ("images.txt", images), ("points3D.txt", pts)):
            (sparse / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
