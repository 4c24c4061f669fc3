"""The Blender side of rendering: one scene per worker process, reused for many objects.

- The OBJ is imported with forward +Y / up +Z, which makes Blender's world frame equal to the
  OBJ file's own frame (no axis change), so cameras and outputs are in OBJ coordinates.
- Each view is rendered twice with Cycles: an RGB pass (anti-aliased, ``samples``) and a data
  pass (1 sample, 0.01 px pixel filter, no bounces) whose depth, normal and coverage are exact
  point samples at the pixel centers. ``pass_alpha_threshold = 0`` keeps transparent surfaces
  (MTL ``d < 1``) in depth and mask.
- The OBJ is imported without Blender's mesh validation, whose removal of duplicate faces keeps
  a copy chosen by a parallel sort (a different one from run to run: double-sided ShapeNet
  models then render differently each time). Instead faces at identical vertex positions are
  removed here keeping the first in file order, and only then is the mesh validated.
- The OBJ's own vertex normals are discarded and recomputed (smooth, split at 30 degrees).
- Missing or unreadable textures are unlinked and replaced by a neutral gray, with a warning.
- Light rig and exposure: cma_builder.render.exposure (the RGB is tone-mapped and composited there).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import bpy
import mathutils
import numpy as np

from blender_scripts.exr import read_exr
from cma_builder import faults
from cma_builder.geometry.cameras import blender_matrix_world, camera_center
from cma_builder.render.exposure import AMBIENT, FILL_SUN, KEY_SUN, SUN_ANGLE_DEG, composite
from cma_builder.render.settings import RenderSettings

NEUTRAL_GRAY = (0.6, 0.6, 0.6, 1.0)
BACKGROUND_DEPTH = 1e9  # Cycles writes 1e10 where a ray hits nothing
DATA_FILTER_WIDTH = 0.01  # Cycles' minimum: samples at the pixel center
SMOOTH_ANGLE = 30.0  # degrees; sharper edges stay sharp in the recomputed shading normals
RGB_FILTER_WIDTH = 1.5


def dedupe_faces(mesh) -> int:
    """Remove faces whose vertex positions equal an earlier face's (any order or winding),
    keeping the first in file order. Returns how many were removed."""
    n = len(mesh.polygons)
    if n < 2:
        return 0
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    start, total = np.empty(n, np.int64), np.empty(n, np.int64)
    mesh.polygons.foreach_get("loop_start", start)
    mesh.polygons.foreach_get("loop_total", total)
    corner_vertex = np.empty(len(mesh.loops), np.int64)
    mesh.loops.foreach_get("vertex_index", corner_vertex)
    drop = []
    for size in np.unique(total):
        faces = np.nonzero(total == size)[0]
        pos = co[corner_vertex[start[faces][:, None] + np.arange(size)]]  # (faces, size, 3)
        order = np.lexsort(pos.transpose(2, 0, 1)[::-1], axis=-1)  # each face's corners sorted by (x, y, z)
        key = np.ascontiguousarray(np.take_along_axis(pos, order[..., None], axis=1)).reshape(len(faces), -1)
        _, first = np.unique(key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1])))[:, 0],
                             return_index=True)  # first occurrence of each key, in face order
        keep = np.zeros(len(faces), bool)
        keep[first] = True
        drop.append(faces[~keep])
    drop = np.sort(np.concatenate(drop))
    if len(drop):
        import bmesh

        bm = bmesh.new()
        bm.from_mesh(mesh)
        bm.faces.ensure_lookup_table()
        bmesh.ops.delete(bm, geom=[bm.faces[int(i)] for i in drop], context="FACES_ONLY")
        bm.to_mesh(mesh)
        bm.free()
    return int(len(drop))


def _enable_gpu() -> str:
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in ("OPTIX", "CUDA"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        prefs.get_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for d in prefs.devices:
                d.use = d.type == backend
            return f"{backend}: {', '.join(d.name for d in devices)}"
    raise RuntimeError("--device gpu: Cycles found no CUDA or OptiX device")


class Scene:
    def __init__(self, settings: RenderSettings, device: str, threads: int, scratch: Path):
        self.settings = settings
        self.scratch = Path(scratch)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        sc = self.scene = bpy.context.scene
        sc.render.engine = "CYCLES"
        self.device = "CPU"
        if device == "gpu":
            self.device = _enable_gpu()
            sc.cycles.device = "GPU"
        else:
            sc.cycles.device = "CPU"
        sc.render.threads_mode = "FIXED"
        sc.render.threads = self.threads = max(1, threads)
        sc.render.use_persistent_data = True  # keep the BVH between the views of an object
        sc.render.resolution_x = sc.render.resolution_y = settings.resolution
        sc.render.resolution_percentage = 100
        sc.render.film_transparent = True
        sc.render.use_file_extension = False
        sc.cycles.seed = 0
        layer = sc.view_layers[0]
        layer.use_pass_z = True
        layer.use_pass_normal = True
        layer.pass_alpha_threshold = 0.0  # transparent surfaces still write depth
        image = sc.render.image_settings
        image.media_type = "MULTI_LAYER_IMAGE"
        image.color_depth = "32"
        image.exr_codec = "NONE"
        image.use_exr_interleave = True  # single-part file: blender_scripts.exr reads it

        world = bpy.data.worlds.new("ambient")
        world.use_nodes = True
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        bg.inputs["Strength"].default_value = AMBIENT
        sc.world = world
        for name, (direction, strength) in (("key", KEY_SUN), ("fill", FILL_SUN)):
            light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
            light.data.energy = strength
            light.data.angle = math.radians(SUN_ANGLE_DEG)
            light.rotation_euler = mathutils.Vector(direction).to_track_quat("Z", "Y").to_euler()
            sc.collection.objects.link(light)
        camera = bpy.data.cameras.new("camera")
        camera.sensor_fit = "HORIZONTAL"
        camera.angle = math.radians(settings.fov)
        self.camera = bpy.data.objects.new("camera", camera)
        sc.collection.objects.link(self.camera)
        sc.camera = self.camera
        self.objects: list = []

    # --- objects -------------------------------------------------------------------------
    def load(self, obj_path: str) -> list[str]:
        """Import one OBJ (replacing the previous one); returns warnings."""
        self.clear()
        before = set(bpy.data.objects)
        result = bpy.ops.wm.obj_import(filepath=obj_path, forward_axis="Y", up_axis="Z", validate_meshes=False)
        self.objects = sorted((o for o in bpy.data.objects if o not in before and o.type == "MESH"),
                              key=lambda o: o.name)
        if "FINISHED" not in result or not self.objects or not any(len(o.data.polygons) for o in self.objects):
            raise RuntimeError("Blender imported no faces from the OBJ")
        for o in self.objects:
            dedupe_faces(o.data)
            o.data.validate(verbose=False, clean_customdata=False)
            self._recompute_normals(o.data)
        if not any(len(o.data.polygons) for o in self.objects):
            raise RuntimeError("Blender imported no valid faces from the OBJ")
        # A fresh Cycles session per object: no state of earlier objects carries into this one.
        self.scene.render.use_persistent_data = False
        self.scene.render.use_persistent_data = True
        return self._fix_materials()

    @staticmethod
    def _recompute_normals(mesh) -> None:
        """Drop the OBJ's vn normals (ShapeNet's are often flipped, which renders as dark,
        chrome-like streaks) and shade smooth, split at edges sharper than 30 degrees; faces
        wound the other way meet at ~180 degrees and so get a sharp edge instead of cancelling."""
        if "custom_normal" in mesh.attributes:
            mesh.attributes.remove(mesh.attributes["custom_normal"])
        mesh.shade_smooth()
        mesh.set_sharp_from_angle(angle=math.radians(SMOOTH_ANGLE))

    def _fix_materials(self) -> list[str]:
        warnings = []
        materials = {s.material for o in self.objects for s in o.material_slots if s.material}
        for mat in sorted(materials, key=lambda m: m.name):
            if not mat.use_nodes:
                continue
            for node in list(mat.node_tree.nodes):
                if node.type != "TEX_IMAGE":
                    continue
                img = node.image
                path = bpy.path.abspath(img.filepath) if img else ""
                if img is not None and os.path.isfile(path) and img.size[0] > 0:
                    continue
                for output in node.outputs:
                    for link in list(output.links):
                        target = link.to_socket
                        mat.node_tree.links.remove(link)
                        if target.name == "Base Color":
                            target.default_value = NEUTRAL_GRAY
                warnings.append(f"texture_fallback: {os.path.basename(path) or 'image'} unreadable, "
                                f"neutral gray used for {mat.name}")
        return warnings

    def vertices(self) -> np.ndarray:
        """World (= OBJ frame) vertex positions of the loaded object."""
        parts = []
        for o in self.objects:
            co = np.empty(len(o.data.vertices) * 3, dtype=np.float32)
            o.data.vertices.foreach_get("co", co)
            m = np.array(o.matrix_world)
            parts.append(co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3])
        return np.concatenate(parts) if parts else np.zeros((0, 3))

    def triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """The surfaces Cycles renders, as world (= OBJ frame) vertices (N, 3) float64 and
        triangles (T, 3) int64 (Blender's own triangulation of every face)."""
        verts, tris, offset = [], [], 0
        for o in self.objects:
            mesh = o.data
            mesh.calc_loop_triangles()
            co = np.empty(len(mesh.vertices) * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            m = np.array(o.matrix_world)
            verts.append(co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3])
            t = np.empty(len(mesh.loop_triangles) * 3, np.int64)
            mesh.loop_triangles.foreach_get("vertices", t)
            tris.append(t.reshape(-1, 3) + offset)
            offset += len(mesh.vertices)
        return np.concatenate(verts), np.concatenate(tris)

    def clear(self) -> None:
        """Remove the object and everything it brought (meshes, materials, images)."""
        for o in self.objects:
            bpy.data.objects.remove(o, do_unlink=True)
        self.objects = []
        bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)

    # --- rendering -----------------------------------------------------------------------
    def _configure(self, rgb: bool) -> None:
        c = self.scene.cycles
        if rgb:
            c.samples = self.settings.samples
            c.filter_width = RGB_FILTER_WIDTH if self.settings.antialias else DATA_FILTER_WIDTH
            c.use_denoising = self.settings.denoise
            c.max_bounces = 4
        else:
            c.samples = 1
            c.filter_width = DATA_FILTER_WIDTH
            c.use_denoising = False
            c.max_bounces = 0

    def _render(self, world_to_cam: np.ndarray, near: float, far: float, path: Path) -> dict[str, np.ndarray]:
        self.camera.matrix_world = mathutils.Matrix(blender_matrix_world(world_to_cam).tolist())
        self.camera.data.clip_start, self.camera.data.clip_end = near, far
        self.scene.render.filepath = str(path)
        t = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        self.render_seconds += time.perf_counter() - t
        return read_exr(path)

    def render_views(self, world_to_cam: np.ndarray, center: np.ndarray, radius: float) -> dict[str, np.ndarray]:
        """Per view: rgb (uint8, background composited), depth (0 = no surface), mask, normal.
        ``self.render_seconds`` is then the time spent in Blender's render calls alone."""
        self.render_seconds = 0.0
        V, R = len(world_to_cam), self.settings.resolution
        dist = [np.linalg.norm(camera_center(m) - center) for m in world_to_cam]
        clips = [(max(1e-3, d - 1.5 * radius), d + 1.5 * radius) for d in dist]
        out = {"rgb": np.zeros((V, R, R, 3), np.uint8), "depth": np.zeros((V, R, R), np.float32),
               "mask": np.zeros((V, R, R), bool)}
        if self.settings.normals:
            out["normal"] = np.zeros((V, R, R, 3), np.float16)
        passes = [("rgb", True), ("data", False)] if self.settings.antialias else [("both", True)]
        for kind, rgb in passes:
            self._configure(rgb)
            for k in range(V):
                ch = self._render(world_to_cam[k], *clips[k], self.scratch / f"{kind}.exr")
                layer = "ViewLayer."
                if kind in ("rgb", "both"):
                    premult = np.stack([ch[layer + f"Combined.{c}"] for c in "RGB"], axis=-1)
                    out["rgb"][k] = composite(premult, ch[layer + "Combined.A"], self.settings.background)
                if kind in ("data", "both"):
                    z = ch[layer + "Depth.Z"]
                    mask = z < BACKGROUND_DEPTH
                    out["mask"][k] = mask
                    out["depth"][k] = np.where(mask, z, 0.0)
                    if self.settings.normals:
                        n = np.stack([ch[layer + f"Normal.{c}"] for c in "XYZ"], axis=-1)
                        out["normal"][k] = np.where(mask[..., None], n, 0.0)
                faults.between_views()  # test hook (CMA_FAULTS); a no-op otherwise
        return out
