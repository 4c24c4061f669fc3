"""One import function per source format, chosen by the manifest row's format.

Each imports one file into the current (emptied) Blender scene and returns ``C`` (3x3): the axis
change the importer applied, Blender world = C @ file coordinates. Every importer but glTF's is
told to keep the file's axes (forward +Y, up +Z: no change); glTF's importer always turns the
file's +Y up into Blender's +Z (Blender (x, y, z) = glTF (x, -z, y)).
"""

from __future__ import annotations

import re

import bpy
import numpy as np

IDENTITY = np.eye(3)
GLTF_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _finished(result: set, what: str) -> None:
    if "FINISHED" not in result:
        raise RuntimeError(f"Blender's {what} importer did not finish ({', '.join(sorted(result))})")


def import_obj(path: str) -> np.ndarray:
    # without Blender's mesh validation: scene.dedupe_faces removes duplicates deterministically first
    _finished(bpy.ops.wm.obj_import(filepath=path, forward_axis="Y", up_axis="Z", validate_meshes=False), "OBJ")
    return IDENTITY


class _NoAnimations:
    """A glTF importer user extension (io_scene_gltf2 instantiates ``glTF2ImportUserExtension`` of
    every enabled add-on module at each import, itself included) that drops the file's animations
    before they are created. Without it the importer makes the first clip active and writes its
    frame-1 pose into the objects' own transforms, which no later step can undo: a truck's wheels
    turn, a character strikes the first pose of its first clip. With it every node keeps its own
    TRS and skinned meshes are skinned in that pose (what the glTF spec defines without animation)."""

    def gather_import_animations(self, animations, animation_options, gltf):
        animation_options.restore_first_anim = False
        gltf.data.animations = None


def import_gltf(path: str) -> np.ndarray:
    import logging
    import sys

    addon = sys.modules.get("io_scene_gltf2")
    if addon is None:  # the add-on module is imported by the operator's first use
        import io_scene_gltf2 as addon
    logging.getLogger("glTFImporter").disabled = True  # its per-file chatter; errors still raise
    addon.glTF2ImportUserExtension = _NoAnimations
    try:
        result = bpy.ops.import_scene.gltf(filepath=path, disable_bone_shape=True)
    except RuntimeError as exc:  # the importer reports unreadable files (and unsupported extensions) by raising
        raise RuntimeError(_gltf_reason(str(exc))) from None
    finally:
        del addon.glTF2ImportUserExtension
    _finished(result, "glTF")
    return GLTF_TO_BLENDER


def _gltf_reason(text: str) -> str:
    """One line from the importer's error: an extension it names, else the exception its traceback
    ends with (not the 'Location:' line after it), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("Location:")]
    for line in lines:
        if "extension" in line.lower():
            return "glTF importer: " + line[:200]
    raised = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return "glTF importer: " + ((raised or lines or ["failed"])[-1][:200])


def import_ply(path: str) -> np.ndarray:
    _finished(bpy.ops.wm.ply_import(filepath=path, forward_axis="Y", up_axis="Z"), "PLY")
    return IDENTITY


def import_stl(path: str) -> np.ndarray:
    _finished(bpy.ops.wm.stl_import(filepath=path, forward_axis="Y", up_axis="Z"), "STL")
    return IDENTITY


def import_off(path: str) -> np.ndarray:
    """Blender has no OFF importer: our reader (cma_builder.source.offfile) builds the mesh from its
    fan triangulation, the same triangles validation reads; COFF colours become a colour attribute."""
    from cma_builder.source.offfile import OffError, read_off_file

    try:
        off = read_off_file(path)
    except OffError as exc:
        raise RuntimeError(f"{exc.code}: {exc.detail}") from None
    tris = off.triangles()
    mesh = bpy.data.meshes.new("off")
    mesh.vertices.add(len(off.vertices))
    mesh.vertices.foreach_set("co", off.vertices.astype(np.float32).ravel())
    mesh.loops.add(3 * len(tris))
    mesh.loops.foreach_set("vertex_index", tris.astype(np.int32).ravel())
    mesh.polygons.add(len(tris))
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * len(tris), 3, dtype=np.int32))
    mesh.update()
    if off.vertex_colors is not None:
        attr = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
        attr.data.foreach_set("color", _linear(off.vertex_colors).ravel())
    elif off.face_colors is not None:
        faces = np.repeat(np.arange(len(off.face_sizes)), np.maximum(off.face_sizes - 2, 0))  # face of each triangle
        attr = mesh.color_attributes.new("Col", "FLOAT_COLOR", "CORNER")
        attr.data.foreach_set("color", np.repeat(_linear(off.face_colors)[faces], 3, axis=0).ravel())
    obj = bpy.data.objects.new("off", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return IDENTITY


def _linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB colours (alpha kept) in [0, 1] -> linear floats, as Blender's colour attributes hold them."""
    c = np.asarray(srgb, dtype=np.float32).copy()
    rgb = c[:, :3]
    c[:, :3] = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return c


IMPORTERS = {"obj": import_obj, "glb": import_gltf, "gltf": import_gltf, "ply": import_ply, "stl": import_stl,
             "off": import_off}
