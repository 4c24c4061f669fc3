"""The checks of ``cma-build validate``: each turns one object's arrays into values, one per view
(or one per object), that must stay under (or above) a threshold. Pure numpy, plus open3d for
the independent-geometry checks. The thresholds and what each value means are listed in CHECKS
and docs/VALIDATION.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cma_builder.geometry.cameras import blender_matrix_world, camera_center, project
from cma_builder.render.exposure import SATURATED_LEVEL
from cma_builder.geometry.visibility import depth_judgement, in_image, segment_visibility

# mapping.visibility (geometry.depth_judgement), fractions of the diagonal
CLEARLY_BEHIND = 0.01
ON_SURFACE = 1e-4


@dataclass(frozen=True)
class Check:
    name: str
    value: str  # what the value is (per view unless it says per object)
    unit: str
    default: float
    bound: str = "max"  # value must be <= threshold ("max") or >= threshold ("min")

    def passes(self, value: float, threshold: float) -> bool:
        if not np.isfinite(value):
            return False
        return value <= threshold if self.bound == "max" else value >= threshold


CHECKS = {c.name: c for c in [
    Check("structure.index", "per object: 1 if index.csv and the shards disagree about it (shard missing, wrong row, "
          "listed twice, in a shard but not in the index)", "", 0),
    Check("structure.arrays", "per object: arrays of its shard missing, not of the documented shape/dtype, or unreadable", "arrays", 0),
    Check("structure.nan", "per object: NaN/inf where data is expected (depth, cameras, points, visible projections, "
          "normals in the mask)",
          "values", 0),
    Check("structure.counts", "per object: view_foreground, view_point_count, fused_point_count not matching the mask",
          "mismatches", 0),
    Check("cameras.rotation", "max of |R R^T - I|, |det R - 1| and the bottom row of world_to_cam against "
          "(0, 0, 0, 1)", "", 1e-6),
    Check("cameras.intrinsics", "1 if K is not [[fx,0,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0 and (cx, cy) inside "
          "the image", "", 0),
    Check("cameras.outside", "camera distance to the bounding-sphere center / its radius (> 1: outside)", "radii",
          1.0, "min"),
    Check("cameras.blender", "max |blender_matrix_world - the one derived from world_to_cam|", "", 1e-6),
    Check("mapping.pixel_error", "max distance between a stored point's projection (K, world_to_cam) and its stored "
          "pixel: view_points vs view_pixels, fused_points vs fused_origin", "px", 0.05),
    Check("mapping.depth_error", "max |camera z of a stored point - stored depth at its pixel| / diagonal",
          "diagonal", 1e-4),
    Check("mapping.in_mask", "stored pixels outside the image or the mask", "pixels", 0),
    Check("mapping.fused_pixels", "max |fused_pixels - projection of fused_points| (points in front of the camera)",
          "px", 0.05),
    Check("mapping.visibility", f"per object: of the (point, view) pairs the stored depth clearly judges (> "
          f"{CLEARLY_BEHIND:g} diagonal behind the surface at the 4 pixel centers around the projection, or within "
          f"{ON_SURFACE:g} diagonal of the surface interpolated there), the fraction whose fused_visible flag says the opposite; flags set outside "
          "the image count as wrong (coarse; geometry.visibility is the exact check)", "fraction", 0.05),
    Check("geometry.point_to_mesh", "per object (--shapenet): p99 distance of stored points to the source OBJ's "
          "surface / diagonal", "diagonal", 1e-3),
    Check("geometry.raycast_depth", "(--shapenet) p99 |stored depth - open3d ray-cast depth| / diagonal over pixels "
          "both hit", "diagonal", 1e-3),
    Check("geometry.raycast_iou", "(--shapenet) IoU of mask and the open3d ray-cast hit mask", "", 0.98, "min"),
    Check("geometry.visibility", "(--shapenet) fraction of the fused points whose fused_visible flag agrees with "
          "open3d ray casting of the source OBJ (segment camera -> point, same tolerance)", "", 0.99, "min"),
    Check("images.rgb_blank", "std of the RGB values over the foreground (0 = blank or empty view)", "levels",
          1.0, "min"),
    Check("images.saturated", f"fraction of foreground pixels at >= {SATURATED_LEVEL} in all three channels "
          "(clipped: shading lost)", "fraction", 0.05),
    Check("images.magenta", "fraction of foreground pixels that are magenta (Blender's missing texture)",
          "fraction", 0.2),
    Check("images.mask_depth", "pixels where mask and (depth > 0, finite) disagree", "pixels", 0),
    Check("images.rgb_mask", "pixels 2+ px away from the mask whose RGB is not the background color, per foreground "
          "pixel (thin parts that miss every pixel center show in RGB only)", "fraction", 0.1),
]}

Value = tuple  # (check name, view or None, value, detail or None)


def object_values(a: dict[str, np.ndarray], settings) -> list[Value]:
    """Every structure/camera/mapping/image value of one object (arrays with the leading axis dropped)."""
    out: list[Value] = []
    depth, mask, K, w2c = a["depth"], a["mask"], a["K"].astype(np.float64), a["world_to_cam"].astype(np.float64)
    V, H, W = depth.shape
    diag = float(a["diagonal"])
    P, F = a["view_points"].shape[1], a["fused_points"].shape[0]

    # structure
    bad = int((~np.isfinite(depth)).sum() + (~np.isfinite(K)).sum() + (~np.isfinite(w2c)).sum()
              + (~np.isfinite(a["view_points"])).sum() + (~np.isfinite(a["fused_points"])).sum()
              + (~np.isfinite(a["bounding_sphere"])).sum()
              + (~np.isfinite(a["fused_pixels"][a["fused_visible"]])).sum())
    if "normal" in a:
        bad += int((~np.isfinite(a["normal"][mask].astype(np.float32))).sum())
    out.append(("structure.nan", None, float(bad), None))
    fg = mask.reshape(V, -1).sum(axis=1)
    counts = a["view_point_count"].astype(np.int64)
    mismatches = int((a["view_foreground"] != fg).sum() + (counts != np.minimum(fg, P)).sum()
                     + (int(a["fused_point_count"]) != min(F, int(counts.sum()))))
    out.append(("structure.counts", None, float(mismatches), None))

    # cameras
    center, radius = a["bounding_sphere"][:3].astype(np.float64), float(a["bounding_sphere"][3])
    for k in range(V):
        R = w2c[k, :3, :3]
        rot = max(np.abs(R @ R.T - np.eye(3)).max(), abs(np.linalg.det(R) - 1), np.abs(w2c[k, 3] - [0, 0, 0, 1]).max())
        out.append(("cameras.rotation", k, float(rot), None))
        fx, fy, cx, cy = K[k, 0, 0], K[k, 1, 1], K[k, 0, 2], K[k, 1, 2]
        ok = (fx > 0 and fy > 0 and -0.5 <= cx <= W - 0.5 and -0.5 <= cy <= H - 0.5 and K[k, 0, 1] == 0
              and K[k, 1, 0] == 0 and np.array_equal(K[k, 2], [0, 0, 1]))
        out.append(("cameras.intrinsics", k, 0.0 if ok else 1.0,
                    None if ok else f"fx={fx:.4g} fy={fy:.4g} cx={cx:.4g} cy={cy:.4g}"))
        dist = float(np.linalg.norm(camera_center(w2c[k]) - center))
        out.append(("cameras.outside", k, dist / radius if radius > 0 else float("inf"), None))
        out.append(("cameras.blender", k, float(np.abs(a["blender_matrix_world"][k] - blender_matrix_world(w2c[k])).max()),
                    None))

    # mapping: per-view clouds and the fused points' origins against their pixels
    m = int(a["fused_point_count"])
    fused = a["fused_points"][:m].astype(np.float64)
    origin = a["fused_origin"][:m].astype(np.int64)
    for k in range(V):
        n = int(counts[k])
        pts = np.concatenate([a["view_points"][k, :n].astype(np.float64), fused[origin[:, 0] == k]])
        pix = np.concatenate([a["view_pixels"][k, :n].astype(np.int64), origin[origin[:, 0] == k, 1:]])
        if len(pts) == 0:
            out += [("mapping.pixel_error", k, 0.0, None), ("mapping.depth_error", k, 0.0, None),
                    ("mapping.in_mask", k, 0.0, None)]
            continue
        proj, z = project(pts, K[k], w2c[k])
        err = np.abs(proj - pix).max(axis=1)
        out.append(("mapping.pixel_error", k, _max(err), None))
        inside = (pix[:, 0] >= 0) & (pix[:, 0] < H) & (pix[:, 1] >= 0) & (pix[:, 1] < W)
        v, u = pix[inside, 0], pix[inside, 1]
        in_mask = mask[k][v, u]
        out.append(("mapping.in_mask", k, float((~inside).sum() + (~in_mask).sum()), None))
        out.append(("mapping.depth_error", k, _max(np.abs(z[inside] - depth[k][v, u])) / diag, None))

    # mapping: the stored projections and visibility of the fused cloud
    pixels, cam_z = project(fused, K, w2c)
    inside = in_image(pixels, cam_z, H, W)
    clearly_hidden, clearly_visible = depth_judgement(fused, depth, mask, K, w2c, CLEARLY_BEHIND * diag,
                                                      ON_SURFACE * diag)
    stored_px, stored_vis = a["fused_pixels"][:m].astype(np.float64), a["fused_visible"][:m]
    for k in range(V):
        front = cam_z[:, k] > 0
        err = np.abs(stored_px[front, k] - pixels[front, k]).max(axis=1) if front.any() else np.zeros(1)
        out.append(("mapping.fused_pixels", k, _max(err), None))
    outside = int((stored_vis & ~inside).sum())  # never visible: always wrong
    wrong = int((stored_vis & clearly_hidden).sum() + (~stored_vis & clearly_visible).sum()) + outside
    judged = int((clearly_hidden | clearly_visible).sum()) + outside
    out.append(("mapping.visibility", None, wrong / max(1, judged),
                f"{judged} pairs judged" + (f"; {outside} flagged visible outside the image" if outside else "")))

    # images
    rgb = a["rgb"]
    background = np.round(np.asarray(settings.background) * 255).astype(np.int16)
    for k in range(V):
        fgk = mask[k]
        colors = rgb[k][fgk].astype(np.int16)
        out.append(("images.rgb_blank", k, float(colors.std()) if len(colors) else 0.0, None))
        clipped = (colors >= SATURATED_LEVEL).all(axis=1)
        out.append(("images.saturated", k, float(clipped.mean()) if len(colors) else 0.0, None))
        magenta = (colors[:, 0] > 180) & (colors[:, 1] < 80) & (colors[:, 2] > 180)
        out.append(("images.magenta", k, float(magenta.mean()) if len(colors) else 0.0, None))
        has_depth = np.isfinite(depth[k]) & (depth[k] > 0)
        out.append(("images.mask_depth", k, float((has_depth != fgk).sum()), None))
        far = ~_dilate(fgk, 2)
        off = np.abs(rgb[k].astype(np.int16) - background).max(axis=-1) > 8
        out.append(("images.rgb_mask", k, float(off[far].sum() / max(1, fgk.sum())), None))
    return out


def mesh_values(a: dict[str, np.ndarray], mesh, settings, max_rays: int = 65536, seed: int = 0) -> list[Value]:
    """Independent geometry: stored points against the source mesh's surface (``mesh``: a
    MeshRaycaster of the source file read without Blender, in the dataset frame), stored depth and
    mask against open3d ray casting through (a sample of at most ``max_rays``) pixel centers, and
    fused_visible against open3d ray casting of each camera -> point segment."""
    if mesh.triangle_count == 0:
        return [("geometry.point_to_mesh", None, float("nan"), "no triangles read from the source file")]
    diag = float(a["diagonal"])
    counts = a["view_point_count"]
    m = int(a["fused_point_count"])
    pts = np.concatenate([a["fused_points"][:m]] + [a["view_points"][k, : int(n)] for k, n in enumerate(counts)])
    out: list[Value] = []
    if len(pts):
        d = mesh.distance(pts)
        out.append(("geometry.point_to_mesh", None, float(np.percentile(d, 99)) / diag, f"max {d.max() / diag:.2e}"))
    depth, mask, K, w2c = a["depth"], a["mask"], a["K"].astype(np.float64), a["world_to_cam"].astype(np.float64)
    V, H, W = depth.shape
    rng = np.random.default_rng(seed)
    flat = np.arange(H * W) if H * W <= max_rays else np.sort(rng.choice(H * W, max_rays, replace=False))
    v, u = flat // W, flat % W
    for k in range(V):
        d_cam = np.stack([(u - K[k, 0, 2]) / K[k, 0, 0], (v - K[k, 1, 2]) / K[k, 1, 1], np.ones(len(u))], axis=1)
        origins = np.broadcast_to(camera_center(w2c[k]), d_cam.shape)
        t = mesh.first_hit(origins, d_cam @ w2c[k, :3, :3])  # planar depth: z of the direction is 1
        ours, theirs = mask[k][v, u], np.isfinite(t)
        union = (ours | theirs).sum()
        out.append(("geometry.raycast_iou", k, float((ours & theirs).sum() / union) if union else 1.0, None))
        both = ours & theirs
        err = np.abs(depth[k][v, u][both] - t[both]) / diag
        out.append(("geometry.raycast_depth", k, float(np.percentile(err, 99)) if both.any() else 0.0, None))
    fused = a["fused_points"][:m].astype(np.float64)
    _, theirs = segment_visibility(fused, K, w2c, H, W, mesh.first_hit, settings.visibility_tolerance * diag)
    stored = a["fused_visible"][:m]
    for k in range(V):
        agree = float((stored[:, k] == theirs[:, k]).mean()) if m else 1.0
        detail = None
        if agree < 1.0:
            detail = (f"{int((stored[:, k] & ~theirs[:, k]).sum())} flagged visible but occluded, "
                      f"{int((~stored[:, k] & theirs[:, k]).sum())} flagged hidden but visible")
        out.append(("geometry.visibility", k, agree, detail))
    return out


def _max(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return 0.0
    return float(x.max()) if np.isfinite(x).all() else float("inf")


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square."""
    out = mask.copy()
    H, W = mask.shape
    for dv in range(-r, r + 1):
        for du in range(-r, r + 1):
            src = mask[max(0, -dv):H - max(0, dv), max(0, -du):W - max(0, du)]
            out[max(0, dv):H - max(0, -dv), max(0, du):W - max(0, -du)] |= src
    return out
