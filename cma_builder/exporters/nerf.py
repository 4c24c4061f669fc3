"""Per object a NeRF / Gaussian-splatting scene in the ``transforms.json`` convention that
nerfstudio and instant-ngp read.

``transform_matrix`` is camera-to-world with OpenGL camera axes (x right, y up, z back: our
OpenCV axes with y and z negated). Pixel centers sit at +0.5 in both readers, so ``cx`` and
``cy`` are ``K[0, 2] + 0.5`` and ``K[1, 2] + 0.5``. Images are RGBA PNGs (alpha = mask), depth is
a 16-bit PNG of planar z-depth in steps of ``depth_scale`` OBJ units (0 = no surface), which both
readers take as z-depth: instant-ngp reads the step from ``integer_depth_scale``; nerfstudio takes
it from its ``depth-unit-scale-factor`` option, whose default 1e-3 is this export's default.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from cma_builder.errors import CmaError
from cma_builder.format import ObjectRef
from cma_builder.exporters import Exporter, register
from cma_builder.exporters.images import OPENCV_TO_OPENGL, cam_to_world, view_name, write_depth16, write_rgba

DEFAULT_DEPTH_SCALE = 1e-3


def intrinsics(K: np.ndarray, width: int, height: int) -> dict:
    fx, fy = float(K[0, 0]), float(K[1, 1])
    return {"fl_x": fx, "fl_y": fy, "cx": float(K[0, 2]) + 0.5, "cy": float(K[1, 2]) + 0.5, "w": width, "h": height}


@register
class Nerf(Exporter):
    name = "nerf"
    summary = "<synset>/<model>/: transforms.json (nerfstudio / instant-ngp), images/ RGBA PNG, depth/ 16-bit PNG"
    arrays = ("rgb", "mask", "depth", "K", "world_to_cam")

    def __init__(self, reader, options):
        scale = options.get("depth_scale")
        super().__init__(reader, {"depth_scale": float(DEFAULT_DEPTH_SCALE if scale is None else scale)})

    def check(self) -> None:
        scale = self.options["depth_scale"]
        if not (math.isfinite(scale) and scale > 0):
            raise CmaError(f"--depth-scale must be a finite number > 0 (got {scale})")

    def target(self, obj: ObjectRef) -> str:
        return f"{obj.synset_id}/{obj.model_id}"

    def write(self, obj: ObjectRef, a: dict, path: Path) -> None:
        scale = self.options["depth_scale"]
        deepest = float(a["depth"].max())
        if deepest / scale > 65535:
            raise CmaError(f"depth up to {deepest:.4g} OBJ units does not fit 16 bits in steps of --depth-scale "
                           f"{scale:g}; export with --depth-scale {deepest / 65000:.2g} or more")
        nearest = float(a["depth"][a["mask"]].min()) if a["mask"].any() else scale
        if nearest < 100 * scale:  # rounds to 0 ("no surface") or to fewer than 100 steps: depth would be lost
            raise CmaError(f"steps of --depth-scale {scale:g} are coarser than 1% of the nearest depth ({nearest:.4g} "
                           f"OBJ units); export with --depth-scale {nearest / 1000:.2g} or less")
        views, height, width = a["depth"].shape
        shared = all(np.array_equal(a["K"][0], K) for K in a["K"])
        meta = {"camera_model": "OPENCV", **(intrinsics(a["K"][0], width, height) if shared else {})}
        if shared:
            meta["camera_angle_x"] = 2 * math.atan(width / (2 * float(a["K"][0][0, 0])))  # original NeRF code
        meta.update({"integer_depth_scale": scale, "depth_unit_scale_factor": scale,
                     "cma": {"synset_id": obj.synset_id, "model_id": obj.model_id,
                             "depth": "planar z-depth, OBJ units = 16-bit value * depth_unit_scale_factor; 0 = none",
                             "transform_matrix": "camera-to-world, OpenGL camera axes (x right, y up, z back)",
                             "pixels": "cx, cy with pixel centers at +0.5 (our K[0,2] + 0.5)",
                             "alpha": "mask: a surface covers the pixel center"}})
        os.makedirs(path / "images")
        os.makedirs(path / "depth")
        frames = []
        for k in range(views):
            write_rgba(path / "images" / view_name(k), a["rgb"][k], a["mask"][k])
            write_depth16(path / "depth" / view_name(k), np.where(a["mask"][k], a["depth"][k], 0), scale)
            frame = {"file_path": f"images/{view_name(k)}", "depth_file_path": f"depth/{view_name(k)}",
                     "depth_path": f"depth/{view_name(k)}",
                     "transform_matrix": (cam_to_world(a["world_to_cam"][k]) @ OPENCV_TO_OPENGL).tolist()}
            if not shared:
                frame.update(intrinsics(a["K"][k], width, height))
            frames.append(frame)
        meta["frames"] = frames
        (path / "transforms.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
