"""The Blender side of rendering: one scene per worker process, reused for many objects.

- A ShapeNet OBJ is imported with forward +Y / up +Z, which makes Blender's world frame equal to
  the OBJ file's own frame (no axis change), so cameras and outputs are in OBJ coordinates.
- Any other file is imported by its format's function (blender_scripts/importers.py) and its
  scene realised into plain meshes (instances, skins, modifiers baked; armatures, empties,
  cameras, lights, points and lines removed), turned and normalised into the dataset frame
  (``source_to_world``, docs/SOURCES.md); meshes without a material get the neutral grey.
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
from blender_scripts.importers import IMPORTERS
from cma_builder import faults
from cma_builder.geometry.cameras import blender_matrix_world, camera_center
from cma_builder.render.exposure import AMBIENT, FILL_SUN, KEY_SUN, SUN_ANGLE_DEG, composite
from cma_builder.render.settings import RenderSettings
from cma_builder.source.base import normalising_transform

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


def _renderable_meshes(objects: list) -> list:
    """The mesh objects Cycles would render: not hidden from render, in a collection of the view
    layer that is neither excluded nor hidden (the glTF importer puts non-default scenes in
    excluded collections and its helper shapes in a hidden one)."""
    layer = bpy.context.view_layer
    ok = set()

    def walk(lc, visible: bool) -> None:
        visible = visible and not lc.exclude and not lc.collection.hide_render
        if visible:
            ok.add(lc.collection.name)
        for child in lc.children:
            walk(child, visible)

    walk(layer.layer_collection, True)
    return [o for o in objects if o.type == "MESH" and not o.hide_render
            and any(c.name in ok for c in o.users_collection)]


def _drop_points_and_lines(mesh) -> bool:
    """Remove vertices and edges that belong to no face (glTF points and lines primitives, OBJ
    'l' records): only surfaces are rendered. Returns whether the mesh keeps any face."""
    if not len(mesh.polygons):
        return False
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(mesh)
    edges = [e for e in bm.edges if not e.link_faces]
    if edges:
        bmesh.ops.delete(bm, geom=edges, context="EDGES_FACES")
    verts = [v for v in bm.verts if not v.link_faces]
    if verts:
        bmesh.ops.delete(bm, geom=verts, context="VERTS")
    if edges or verts:
        bm.to_mesh(mesh)
    bm.free()
    return True


def _neutral_material(color_attribute: str):
    """The material of meshes the file gives none: Principled BSDF, roughness 0.5, Base Color
    NEUTRAL_GRAY, or the colour attribute ``color_attribute`` when there is one."""
    name = f"cma-neutral-{color_attribute}" if color_attribute else "cma-neutral"
    mat = bpy.data.materials.get(name)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = NEUTRAL_GRAY
    bsdf.inputs["Roughness"].default_value = 0.5
    if color_attribute:
        node = mat.node_tree.nodes.new("ShaderNodeVertexColor")
        node.layer_name = color_attribute
        mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


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
        self._rig = set(bpy.data.objects)  # the camera and the lights: everything else is an object's

    # --- objects -------------------------------------------------------------------------
    def load_source(self, request) -> tuple[list[str], np.ndarray]:
        """Import one object's file (a RenderRequest) replacing the previous one. Returns (warnings,
        source_to_world 4x4). ShapeNet OBJs (no normalisation) load as they always did; every other
        file is realised (see :meth:`_realise`) into plain meshes in the dataset frame."""
        if request.fmt == "obj" and not request.normalise:
            return self.load(request.obj_path), np.eye(4)
        self.clear()
        before = set(bpy.data.objects)
        C = IMPORTERS[request.fmt](request.obj_path)
        imported = [o for o in bpy.data.objects if o not in before]
        self.scene.camera = self.camera  # an imported camera never takes over
        self.objects = self._realise(imported)
        self.objects = [o for o in self.objects if _drop_points_and_lines(o.data)]
        if not self.objects:
            raise RuntimeError("no triangles: the file's scene has no faces (empty, or points and lines only)")
        to_file = np.eye(4)
        to_file[:3, :3] = C.T  # Blender world -> the file's own coordinates
        file_vertices = self.vertices() @ C  # rows: C^T v
        source_to_world = normalising_transform(file_vertices, request.up_axis) if request.normalise else np.eye(4)
        m = mathutils.Matrix((source_to_world @ to_file).tolist())
        keep_normals = request.fmt in ("glb", "gltf")  # authored normals; other formats' are recomputed
        for o in self.objects:
            o.data.transform(m)
            dedupe_faces(o.data)
            o.data.validate(verbose=False, clean_customdata=False)
            if not keep_normals:
                self._recompute_normals(o.data)
        self.objects = [o for o in self.objects if len(o.data.polygons)]
        if not self.objects:
            raise RuntimeError("no triangles: Blender found no valid faces in the file")
        self.scene.render.use_persistent_data = False  # a fresh Cycles session per object
        self.scene.render.use_persistent_data = True
        return self._fix_materials() + self._neutral_materials(), source_to_world

    def _realise(self, imported: list) -> list:
        """Plain mesh objects in world space for everything the import made: each renderable mesh
        object's evaluated geometry (skinned meshes in the pose of the nodes' own transforms, no
        animation: see importers._NoAnimations; modifiers and shape keys baked, each instance its
        own copy) with its world transform applied; then every imported object (armatures,
        empties, lights, cameras, the originals) and collection is removed."""
        for o in imported:  # importers other than glTF's make no animation; this keeps it so
            o.animation_data_clear()
            if o.type == "MESH" and o.data.shape_keys is not None:
                o.data.shape_keys.animation_data_clear()
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        out = []
        for o in sorted(_renderable_meshes(imported), key=lambda o: o.name):
            evaluated = o.evaluated_get(depsgraph)
            mesh = bpy.data.meshes.new_from_object(evaluated, preserve_all_data_layers=True, depsgraph=depsgraph)
            for i, slot in enumerate(evaluated.material_slots):  # materials linked to the object, not its mesh
                if slot.link == "OBJECT" and i < len(mesh.materials):
                    mesh.materials[i] = slot.material
            mesh.transform(evaluated.matrix_world)
            real = bpy.data.objects.new(f"cma-{len(out):04d}", mesh)
            self.scene.collection.objects.link(real)
            out.append(real)
        for o in imported:
            bpy.data.objects.remove(o, do_unlink=True)
        for c in list(bpy.data.collections):  # the importer's (one per glTF scene, hidden helpers)
            bpy.data.collections.remove(c)
        return out

    def _neutral_materials(self) -> list[str]:
        """Meshes without a material get the neutral grey one, or, when they have vertex colours,
        the same material with the colour attribute as Base Color. Returns warnings (none)."""
        for o in self.objects:
            mesh = o.data
            if any(slot is not None for slot in mesh.materials):
                continue
            colors = mesh.color_attributes
            name = colors.active_color.name if colors.active_color is not None else (colors[0].name if len(colors) else "")
            mesh.materials.clear()
            mesh.materials.append(_neutral_material(name))
        return []

    def load(self, obj_path: str) -> list[str]:
        """Import one ShapeNet OBJ in its own frame (replacing the previous one); returns warnings."""
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
                present = img is not None and (img.packed_file is not None or os.path.isfile(path))
                if present and img.size[0] > 0:  # GLB textures are packed into the file
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
        """Remove the object and everything it brought (meshes, materials, images), and whatever an
        import left behind before failing (objects, collections): only the rig stays."""
        for o in [o for o in bpy.data.objects if o not in self._rig]:
            bpy.data.objects.remove(o, do_unlink=True)
        for c in list(bpy.data.collections):
            bpy.data.collections.remove(c)
        self.objects = []
        self.scene.camera = self.camera
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
