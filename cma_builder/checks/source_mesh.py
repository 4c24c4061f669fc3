"""Source meshes read without Blender, for ``cma-build validate --source``.

glTF/GLB (their scene graph: node transforms, instances expanded; Draco through DracoPy), OBJ,
PLY and STL through trimesh; glTF files with skins, triangle fans or EXT_mesh_gpu_instancing through
cma_builder.checks.gltf_scene (trimesh reads those otherwise than the spec); OFF through our own reader (cma_builder.source.offfile), fan-triangulated as it
is rendered. Points and lines are left out, as they are at render. Coordinates are the file's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_source_mesh(path: str | Path, fmt: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, triangles (T, 3) int64) of the file's whole scene, file frame.
    ``root``: the collection, which side files must lie in (as the scan requires)."""
    if fmt == "off":
        from cma_builder.source.offfile import read_off_file

        off = read_off_file(path)
        return off.vertices.astype(np.float64), off.triangles()
    if fmt in ("glb", "gltf"):
        from cma_builder.checks import gltf_scene

        if gltf_scene.needs_reference(path):
            return gltf_scene.scene_mesh(path, root)
    import trimesh

    scene = trimesh.load(str(path), force="scene", process=False)
    verts, tris, offset = [], [], 0
    for geom in scene.dump(concatenate=False):  # each instance placed by its node's world transform
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue  # point clouds and paths (glTF points and lines primitives)
        verts.append(np.asarray(geom.vertices, dtype=np.float64))
        tris.append(np.asarray(geom.faces, dtype=np.int64) + offset)
        offset += len(geom.vertices)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(verts), np.concatenate(tris)


def dataset_mesh(obj, source_to_world: np.ndarray, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of a scanned object's (a SourceObject's) source file read without Blender, in the
    dataset frame: ShapeNet OBJs by open3d (their frame is the dataset's), other files by :func:`read_source_mesh`
    carried by the object's stored ``source_to_world``."""
    if not obj.normalise and obj.fmt == "obj":
        from cma_builder.geometry.raycast import read_obj

        return read_obj(str(obj.path))
    from cma_builder.source.base import apply_transform

    vertices, triangles = read_source_mesh(obj.path, obj.fmt, root)
    return apply_transform(source_to_world, vertices), triangles
