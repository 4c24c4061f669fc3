"""A Rerun recording (``.rrd``) of a dataset's objects: cameras, images, depth and points in one frame.

Everything is static (no timeline) and in each object's own dataset frame (docs/CONVENTIONS.md, Y up).
Entities of one object (docs/VIEWING.md):

    /objects/<synset id>/<model id>              view coordinates: right-handed, Y up
        fused_points                             Points3D: the fused cloud, each point in the RGB of its origin pixel
        source_mesh                              Mesh3D: the source file (--source), through source_to_world
        cams/view_KK                             Transform3D: world_to_cam (the object -> camera KK, OpenCV frame),
                                                 and Points3D: the fused points fused_visible marks visible in view KK,
                                                 camera frame, each in the RGB view KK shows at its stored pixel
        cams/view_KK/image                       Pinhole: K (principal point + 0.5, Rerun's pixel centers), W x H
        cams/view_KK/image/rgb, depth, mask      Image, DepthImage (1 = one dataset unit), SegmentationImage
        cams/view_KK/image/visible               Points2D: those points' stored pixels (fused_pixels)

Only the rerun SDK's logging code runs to write it; it sends nothing (docs/VIEWING.md, "Usage data").
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cma_builder.atomic import ensure_parent
from cma_builder.errors import CmaError
from cma_builder.format import DatasetReader, ObjectRef
from cma_builder.progress import progress
from cma_builder.view.pinhole import rerun_image_from_camera, rerun_translation_rotation, rerun_xy

APPLICATION_ID = "cma-build view"
ARRAYS = ["rgb", "depth", "mask", "K", "world_to_cam", "fused_points", "fused_origin", "fused_point_count",
          "fused_pixels", "fused_visible", "source_to_world", "bounding_sphere"]
FUSED_RADIUS = 2.0  # UI points (3D)
VISIBLE_RADIUS = 2.5  # UI points (3D): drawn over the fused points they coincide with, so selecting them outlines them
PIXEL_DOT = 0.3  # pixels (2D): a dot inside the pixel, the image visible around it


@dataclass
class Written:
    path: Path
    views: int = 0
    points: int = 0
    mesh_triangles: int = 0


def object_path(obj: ObjectRef) -> str:
    import rerun as rr

    return rr.new_entity_path(["objects", obj.synset_id, obj.model_id])


def camera_path(root: str, view: int) -> str:
    return f"{root}/cams/view_{view:02d}"


def parse_views(text: str | None) -> list[int] | None:
    """``--views``: comma-separated view indices (e.g. ``0,3,6``) or None for every view."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        views = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CmaError(f"--views '{text}': expected comma-separated view indices such as 0,3,6 (or all)") from None
    if not views or min(views) < 0:
        raise CmaError(f"--views '{text}': expected comma-separated view indices from 0, such as 0,3,6 (or all)")
    return list(dict.fromkeys(views))


def write_recording(reader: DatasetReader, objs: list[ObjectRef], out: Path, views: list[int] | None = None,
                    meshes: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] | None = None,
                    show_progress: bool = True) -> Written:
    """Write ``objs`` of ``reader`` to the Rerun recording ``out`` (complete or not at all); ``views``:
    which views (default all); ``meshes``: source meshes in the dataset frame by object key."""
    import rerun as rr

    count = reader.settings.views
    if views is not None and max(views) >= count:
        raise CmaError(f"--views: the dataset has {count} views per object (0 to {count - 1}); got {max(views)}")
    shown = views if views is not None else list(range(count))
    digest = hashlib.sha1("\n".join([str(reader.root)] + [o.key for o in objs]).encode()).hexdigest()[:16]
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=f"{reader.root.name}-{digest}", send_properties=False)
    rr.set_strict_mode(True)  # a component rerun cannot convert is an error, never silently left out
    out = ensure_parent(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    written = Written(out)
    try:
        rec.save(tmp, default_blueprint=blueprint(objs, shown))
        for obj in progress(objs, desc="view", unit="obj", enabled=show_progress):
            a = reader.load(obj, ARRAYS)
            mesh = (meshes or {}).get((obj.synset_id, obj.model_id))
            log_object(rec, obj, a, shown, mesh, written)
        rec.flush(blocking=True)
        rr.disconnect(recording=rec)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return written


def log_object(rec, obj: ObjectRef, a: dict[str, np.ndarray], views: list[int],
               mesh: tuple[np.ndarray, np.ndarray] | None, written: Written) -> None:
    import rerun as rr

    root = object_path(obj)

    def log(path: str, *archetypes) -> None:
        rec.log(path, *archetypes, static=True)

    log(root, rr.ViewCoordinates.RIGHT_HAND_Y_UP)
    rgb, depth, mask = a["rgb"], a["depth"], a["mask"]
    m = int(a["fused_point_count"])
    fused = a["fused_points"][:m]
    origin = a["fused_origin"][:m].astype(np.int64)
    colors = rgb[origin[:, 0], origin[:, 1], origin[:, 2]]
    log(f"{root}/fused_points", rr.Points3D(fused, colors=colors, radii=rr.Radius.ui_points(FUSED_RADIUS)))
    written.points += m
    if mesh is not None:
        vertices, triangles = mesh
        log(f"{root}/source_mesh", rr.Mesh3D(vertex_positions=vertices, triangle_indices=triangles,
                                             albedo_factor=(180, 180, 190, 255)))
        written.mesh_triangles += len(triangles)
    center = a["bounding_sphere"][:3]
    height, width = depth.shape[1:3]
    for k in views:
        cam = camera_path(root, k)
        translation, rotation = rerun_translation_rotation(a["world_to_cam"][k])
        distance = float(np.linalg.norm(rotation.T @ -translation - center))
        log(cam, rr.Transform3D(translation=translation, mat3x3=rotation,
                                relation=rr.TransformRelation.ChildFromParent))
        visible = a["fused_visible"][:m, k]
        pixels = a["fused_pixels"][:m, k][visible].astype(np.float64)
        vu = np.clip(np.floor(pixels + 0.5).astype(np.int64), 0, [height - 1, width - 1])
        seen = rgb[k, vu[:, 0], vu[:, 1]]
        # on the camera entity itself: selecting the camera outlines them (Rerun highlights no children)
        log(cam, rr.Points3D(fused[visible].astype(np.float64) @ rotation.T + translation, colors=seen,
                             radii=rr.Radius.ui_points(VISIBLE_RADIUS)))
        image = f"{cam}/image"
        log(image, rr.Pinhole(image_from_camera=rerun_image_from_camera(a["K"][k]), resolution=[width, height],
                              camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=0.3 * distance))
        log(f"{image}/rgb", rr.Image(rgb[k]))
        log(f"{image}/depth", rr.DepthImage(depth[k], meter=1.0))
        log(f"{image}/mask", rr.SegmentationImage(mask[k].astype(np.uint8)))
        log(f"{image}/visible", rr.Points2D(rerun_xy(pixels), colors=seen, radii=PIXEL_DOT))
        written.views += 1


def blueprint(objs: list[ObjectRef], views: list[int]):
    """One tab per object: its 3D scene (cameras with their RGB, the clouds, the mesh) beside a grid of its
    camera images (RGB and the visible points); depth and mask stay one click away in the entity tree."""
    import rerun.blueprint as rrb

    tabs = []
    for obj in objs:
        root = object_path(obj)
        cams = [rrb.Spatial2DView(origin=f"{camera_path(root, k)}/image", contents=["$origin/rgb", "$origin/visible"],
                                  name=f"view {k}") for k in views]
        # the 3D view leaves out the depth and mask images (depth would be drawn as a second cloud of every view)
        hidden = [f"- $origin/cams/view_{k:02d}/image/{name}" for k in views for name in ("depth", "mask")]
        scene = rrb.Spatial3DView(origin=root, contents=["+ $origin/**", *hidden],
                                  name=f"{obj.category or obj.synset_id} {obj.model_id}")
        tabs.append(rrb.Horizontal(scene,
                                   rrb.Grid(*cams), column_shares=[3, 2], name=obj.key))
    return rrb.Blueprint(rrb.Tabs(*tabs), collapse_panels=False)
