"""The dataset schema: every array of a shard (shape, dtype, chunking, meaning), the axis names,
the index columns, the split codes and the root attributes that document them (docs/DATA_FORMAT.md).
What the writer writes and every reader expects; the only I/O is listing shards and reading the
root attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

from cma_builder import __version__
from cma_builder.errors import CmaError
from cma_builder.render.exposure import AMBIENT, FILL_SUN, KEY_SUN, TONE_KNEE
from cma_builder.render.settings import RenderSettings
from cma_builder.source.taxonomy import Taxonomy

FORMAT = "cma-dataset"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# name: (per-object shape, dtype, chunk per view?, description, value where there is no data)
ARRAYS: dict[str, tuple[str, str, bool, str, str]] = {
    "rgb": ("V,H,W,3", "uint8", True, "sRGB color, anti-aliased RGB pass (1.5 px filter) unless settings.antialias is "
            "false; tone curve of conventions.color", "the background color where mask is false"),
    "depth": ("V,H,W", "float32", True, "planar depth: camera-frame z of the first surface at the pixel center, OBJ units",
              "0 where mask is false"),
    "mask": ("V,H,W", "bool", True, "a surface (transparent ones included) covers the pixel center", "-"),
    "normal": ("V,H,W,3", "float16", True, "unit shading normal of the first surface at the pixel center, OBJ frame "
               "(only when settings.normals)", "0 where mask is false"),
    "K": ("V,3,3", "float64", False, "intrinsics in pixels, integer pixel centers", "-"),
    "world_to_cam": ("V,4,4", "float64", False, "OpenCV extrinsics (x right, y down, z forward): X_cam = R X + t", "-"),
    "blender_matrix_world": ("V,4,4", "float64", False, "Blender camera matrix_world (camera looks down its -Z)", "-"),
    "view_points": ("V,P,3", "float32", False, "per-view cloud: FPS of the view's back-projected foreground pixels, OBJ frame",
                    "rows past view_point_count repeat earlier points; all 0 if the view has no foreground"),
    "view_pixels": ("V,P,2", "int16", False, "pixel (v, u) = (row, column) each view point was back-projected from",
                    "-1 if the view has no foreground"),
    "view_point_count": ("V", "int32", False, "distinct points in view_points: min(P, view_foreground)", "-"),
    "view_foreground": ("V", "int32", False, "foreground pixels of the view (back-projected points before FPS)", "-"),
    "fused_points": ("F,3", "float32", False, "FPS over the union of the per-view clouds, OBJ frame",
                     "rows past fused_point_count repeat earlier points"),
    "fused_origin": ("F,3", "int16", False, "(view, v, u) each fused point was back-projected from", "-"),
    "fused_point_count": ("", "int32", False, "distinct points in fused_points", "-"),
    "fused_pixels": ("F,V,2", "float32", False, "projection (v, u) of each fused point into each view (continuous)",
                     "NaN or any value behind the camera; check fused_visible"),
    "fused_visible": ("F,V", "bool", False, "exact visibility: the point projects inside the image and the segment from "
                      "the camera center to it meets no surface of the mesh more than settings.visibility_tolerance * "
                      "diagonal before it (ray cast against the triangles Blender rendered)", "-"),
    "source_to_world": ("4,4", "float64", False, "the similarity transform taking the source file's own coordinates to "
                        "the dataset frame of every stored point, depth and camera: X_world = M [X_source, 1] "
                        "(ShapeNet: identity; docs/SOURCES.md)", "-"),
    "bounding_sphere": ("4", "float64", False, "center (x, y, z) of the vertices' bounding box and the radius around it "
                        "that holds every vertex; cameras look at the center", "-"),
    "diagonal": ("", "float64", False, "bounding-box diagonal of the vertices (1 for ShapeNetCore.v2)", "-"),
    "model_id": ("", "string", False, "object id (ShapeNet: model id; docs/SOURCES.md for other layouts)", "-"),
    "synset_id": ("", "string", False, "category id (ShapeNet: synset id; other layouts: the category as a safe name)",
                  "-"),
    "label": ("", "int16", False, "category label: index of the category id in the attribute label_names",
              "-1 if unknown"),
    "split": ("", "uint8", False, "0 train, 1 val, 2 test (attribute split_codes)", "-"),
}

# zarr v3 dimension_names (read by xarray and dask): the shape letters of ARRAYS, then each literal
# axis by array. A name means one size everywhere, so one shard opens as one xarray.Dataset.
DIMENSIONS = {"N": "object", "V": "view", "H": "y", "W": "x", "P": "view_point", "F": "fused_point"}
COMPONENT_DIMENSIONS = {
    "rgb": ("channel",), "normal": ("xyz",), "K": ("k_row", "k_col"), "world_to_cam": ("row", "col"),
    "blender_matrix_world": ("row", "col"), "source_to_world": ("row", "col"), "view_points": ("xyz",), "view_pixels": ("vu",),
    "fused_points": ("xyz",), "fused_origin": ("view_v_u",), "fused_pixels": ("vu",), "bounding_sphere": ("center_radius",),
}


def dimension_names(array: str) -> tuple[str, ...]:
    """Names of the axes of ``array`` in a shard, e.g. rgb: (object, view, y, x, channel)."""
    letters = ["N"] + [d for d in ARRAYS[array][0].split(",") if d]
    components = iter(COMPONENT_DIMENSIONS.get(array, ()))
    return tuple(DIMENSIONS[d] if d in DIMENSIONS else next(components) for d in letters)


INDEX_COLUMNS = ["synset_id", "model_id", "category", "label", "split", "status", "error", "warnings", "shard", "row",
                 "seconds_setup", "seconds_render", "seconds_decode", "seconds_raycast", "seconds_backproject",
                 "seconds_write", "seconds_total",
                 "settings_hash", "worker", "worker_rss_mb", "obj_path", "finished_at", "format", "up_axis"]


def label_names() -> list[str]:
    return Taxonomy.bundled().top_level_ids


def resolve_categories(attrs: dict, tokens: list[str], present_ids: list[str]) -> list[str]:
    """Category ids of a dataset for user-given names or ids: ShapeNet datasets through the
    bundled taxonomy (synonyms, synset ids); other layouts by their own category ids and names
    (case-insensitive). CmaError names an unknown one."""
    if attrs.get("source", {}).get("layout", "shapenet") == "shapenet":
        return Taxonomy.bundled().resolve(tokens, present_ids)
    known = {cid.lower(): cid for cid in [*attrs.get("label_names", []), *present_ids]}
    known.update({name.lower(): cid for cid, name in zip(attrs.get("label_names", []),
                                                        attrs.get("label_categories", []))})
    out = []
    for token in (t.strip() for t in tokens):
        if not token:
            continue
        if token.lower() not in known:
            have = ", ".join(sorted(set(present_ids))[:8])
            raise CmaError(f"unknown category '{token}' (this dataset has: {have})")
        if known[token.lower()] not in out:
            out.append(known[token.lower()])
    return out


def shard_names(root: Path) -> list[str]:
    """The committed shards of the dataset at ``root`` (folders of ``shards/`` holding a zarr.json), sorted."""
    shard_dir = root / "shards"
    return sorted(p.name for p in shard_dir.iterdir() if (p / "zarr.json").is_file()) if shard_dir.is_dir() else []


def read_attrs(root: Path) -> dict | None:
    """The dataset's own root attributes (zarr.json's 'cma-dataset' entry); None for any other folder."""
    meta = Path(root) / "zarr.json"
    if not meta.is_file():
        return None
    try:
        attrs = json.loads(meta.read_text("utf-8")).get("attributes", {})
    except (OSError, json.JSONDecodeError):
        return None
    return attrs.get(FORMAT)


def describe(settings: RenderSettings, source: dict | None = None) -> dict:
    """The root attributes: conventions, every array, settings, and the collection the objects
    come from (``source``: its layout and labels; None: ShapeNetCore.v2's). Mirrors docs/DATA_FORMAT.md."""
    R, V = settings.resolution, settings.views
    sizes = {"V": V, "H": R, "W": R, "P": settings.view_points, "F": settings.fused_points}
    arrays = {}
    for name, (shape, dtype, per_view, description, missing) in ARRAYS.items():
        if name == "normal" and not settings.normals:
            continue
        dims = ["N"] + [d for d in shape.split(",") if d]
        arrays[name] = {"shape": dims, "dimension_names": list(dimension_names(name)), "example_shape": [sizes.get(d, int(d) if d.isdigit() else None) for d in dims],
                        "dtype": dtype, "chunk": "one view of one object" if per_view else "one object",
                        "description": description, "missing": missing}
    return {
        "format": FORMAT, "format_version": 1, "toolkit_version": __version__,
        "conventions": {
            "world_frame": "ShapeNetCore.v2: the OBJ file's own frame and units (Y up, -Z front, unit bbox diagonal); "
                           "other layouts: the source file's frame turned so its up axis is +Y, bounding box "
                           "centred at the origin with a unit diagonal (source_to_world maps back)",
            "camera_frame": "OpenCV: x right, y down, z forward; world_to_cam maps world to camera (4x4)",
            "intrinsics": "K in pixels, integer pixel centers: pixel (v, u) spans [u-0.5, u+0.5] x [v-0.5, v+0.5]",
            "pixel_order": "(v, u) = (row, column)",
            "depth": "planar z-depth (camera z), not ray length; 0 = no surface",
            "projection": "u = K[0,0] x/z + K[0,2], v = K[1,1] y/z + K[1,2] with (x, y, z) = R X + t",
            "in_image": "-0.5 <= u < W - 0.5 and -0.5 <= v < H - 0.5, in front of the camera (z > 0)",
            "visibility": "fused_visible[p, k]: p in_image of view k and (1 - t) |p - c_k| <= visibility_tolerance * "
                          "diagonal, t = first hit of the ray c_k + t (p - c_k) with the mesh (t = 1 at p)",
            "color": "sRGB (8 bit) of linear radiance under the light rig (ambient sky %.2g, key sun %.2g from %s, fill "
                     "sun %.2g from %s, OBJ frame); tone curve: identity below %.2g, then %.2g + %.2g (1 - exp(-(x - "
                     "%.2g) / %.2g)); the object is tone-mapped before the blend with the background" % (
                         AMBIENT, KEY_SUN[1], list(KEY_SUN[0]), FILL_SUN[1], list(FILL_SUN[0]), TONE_KNEE, TONE_KNEE,
                         1 - TONE_KNEE, TONE_KNEE, 1 - TONE_KNEE),
        },
        "dims": {"N": "objects in the shard", "V": "views", "H": "image height", "W": "image width",
                 "P": "points per view cloud", "F": "fused points"},
        "arrays": arrays,
        "layout": "shards/<name>/<array>: leading axis = objects of that shard; index.csv maps each object to "
                  "(shard, row)",
        "label_names": source["label_names"] if source else label_names(),
        "label_categories": source["label_categories"] if source else [Taxonomy.bundled().category_name(s)
                                                                       for s in label_names()],
        "source": {"layout": source["layout"] if source else "shapenet"},  # the path is the user's to give again
        "split_codes": SPLIT_CODES,
        "settings": settings.to_dict(),
        "settings_hash": settings.hash(),
    }
