"""One binary little-endian PLY per object: the fused cloud (distinct points only) with the color
of each point's origin pixel, normals when the dataset has them; with ``--per-view`` also one
PLY per view cloud. Readers: open3d, trimesh, plyfile, MeshLab, CloudCompare."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cma_builder.format import ObjectRef
from cma_builder.exporters import Exporter, register
from cma_builder.exporters.images import point_colors


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray, normals: np.ndarray | None = None) -> None:
    """Binary PLY with float xyz, uchar red/green/blue and, if given, float nx/ny/nz per vertex."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(points), dtype=fields)
    for i, axis in enumerate("xyz"):
        data[axis] = points[:, i]
        if normals is not None:
            data["n" + axis] = normals[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        data[c] = colors[:, i]
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment cma-build export: OBJ frame and units",
              f"element vertex {len(points)}"] + [f"property {types[t]} {n}" for n, t in fields] + ["end_header"]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(data.tobytes())


@register
class Ply(Exporter):
    name = "ply"
    summary = "<synset>/<model>.ply: fused cloud + origin-pixel RGB (+ normals); --per-view: <synset>/<model>/view_NNN.ply"
    arrays = ("fused_points", "fused_point_count", "fused_origin", "rgb", "normal", "view_points", "view_pixels",
              "view_point_count")

    def __init__(self, reader, options):
        super().__init__(reader, {"per_view": bool(options.get("per_view"))})

    def target(self, obj: ObjectRef) -> str:
        # per-view exports are a folder (cloud + views), committed as one rename
        return f"{obj.synset_id}/{obj.model_id}" + ("" if self.options["per_view"] else ".ply")

    def write(self, obj: ObjectRef, a: dict, path: Path) -> None:
        n = int(a["fused_point_count"])
        origin = a["fused_origin"][:n]
        normals = None
        if "normal" in a:
            o = origin.astype(np.int64)
            normals = a["normal"][o[:, 0], o[:, 1], o[:, 2]].astype(np.float32)
        if not self.options["per_view"]:
            write_ply(path, a["fused_points"][:n], point_colors(a["rgb"], origin), normals)
            return
        os.makedirs(path)
        write_ply(path / "fused.ply", a["fused_points"][:n], point_colors(a["rgb"], origin), normals)
        for k in range(len(a["view_points"])):
            m = int(a["view_point_count"][k])
            pix = a["view_pixels"][k, :m].astype(np.int64)
            vnormals = None if normals is None else a["normal"][k, pix[:, 0], pix[:, 1]].astype(np.float32)
            write_ply(path / f"view_{k:03d}.ply", a["view_points"][k, :m], a["rgb"][k, pix[:, 0], pix[:, 1]], vnormals)
