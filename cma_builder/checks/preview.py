"""``cma-build preview``: contact sheets a person can check at a glance.

One PNG per object: rows of RGB, depth (turbo color map with a scale bar), mask, normals (when
stored) and the fused points visible in each view, projected with the stored K and world_to_cam
and colored by depth over a gray copy of the RGB (a wrong mapping shows as points off the
object); below, the fused cloud from four angles colored by the RGB of each point's origin
pixel. Plus ``grid.png``: one labeled thumbnail per chosen object, a row per category.

Each sheet stores its layout (tile boxes, scale) as JSON in the PNG text chunk ``cma-layout``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

from cma_builder.atomic import check_output_dir, current_umask
from cma_builder.geometry.cameras import camera_center, project
from cma_builder.checks.drawing import cloud_view, gray_backdrop, label, scale_bar, splat, text_image, turbo, upscale
from cma_builder.errors import CmaError
from cma_builder.progress import progress
from cma_builder.format import DatasetReader, ObjectRef
from cma_builder.paths import check_inside

GAP = 4
LABEL_W = 70
BAR_W = 90
CLOUD = 200
CLOUD_ANGLES = [(45.0, 25.0, "front-right"), (135.0, 25.0, "back-right"), (270.0, 10.0, "left"), (0.0, 85.0, "top")]
WHITE = (255, 255, 255)


def choose(reader: DatasetReader, ids: list[str] | None, n: int, seed: int = 0) -> list[ObjectRef]:
    """The named objects (model id or synset/model id), or ``n`` taken round-robin across the
    categories in a seeded random order."""
    objs = reader.objects()
    if not objs:
        raise CmaError(f"{reader.root}: no rendered objects (index.csv has no row with status done)")
    if ids:
        by_id = {o.model_id: o for o in objs} | {o.key: o for o in objs}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise CmaError(f"--objects: {', '.join(missing[:5])} not among the {len(objs)} rendered objects of "
                           f"{reader.root} (give model ids or synset/model ids from index.csv)")
        return list({by_id[i].key: by_id[i] for i in ids}.values())  # an object named twice (id, synset/id) once
    if n < 1:
        raise CmaError(f"--n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    per_cat: dict[str, list[ObjectRef]] = defaultdict(list)
    for o in objs:
        per_cat[o.synset_id].append(o)
    queues = []
    for sid in sorted(per_cat):
        group = sorted(per_cat[sid], key=lambda o: o.model_id)
        queues.append([group[i] for i in rng.permutation(len(group))])
    chosen = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop(0))
    return chosen


def shown_views(V: int, max_views: int) -> list[int]:
    return list(range(V)) if V <= max_views else sorted({int(round(x)) for x in np.linspace(0, V - 1, max_views)})


def view_angles(w2c: np.ndarray, center: np.ndarray) -> tuple[float, float]:
    """(azimuth, elevation) in degrees of a camera around ``center`` (docs/CONVENTIONS.md)."""
    d = camera_center(w2c) - center
    d /= np.linalg.norm(d)
    return float(np.degrees(np.arctan2(d[0], -d[2])) % 360.0), float(np.degrees(np.arcsin(np.clip(d[1], -1, 1))))


def contact_sheet(a: dict[str, np.ndarray], obj: ObjectRef, reader: DatasetReader, max_views: int = 12
                  ) -> tuple[Image.Image, dict]:
    """One object's sheet and its layout."""
    rgb, depth, mask, K, w2c = a["rgb"], a["depth"], a["mask"], a["K"], a["world_to_cam"]
    V, R = depth.shape[0], depth.shape[1]
    views = shown_views(V, max_views)
    s = max(1, int(np.ceil(160 / R)))  # tiles of at least 160 px
    T = R * s
    dot = max(1, s - 1) if s > 1 else 1
    fg = depth[mask]
    lo, hi = (float(fg.min()), float(fg.max())) if fg.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-6

    def depth_color(z):
        return turbo((z - lo) / (hi - lo))

    m = int(a["fused_point_count"])
    fused, vis = a["fused_points"][:m].astype(np.float64), a["fused_visible"][:m]
    rows: list[tuple[str, list[np.ndarray]]] = []
    rows.append(("RGB", [upscale(rgb[k], s) for k in views]))
    tiles = []
    for k in views:
        t = np.full((R, R, 3), 255, np.uint8)
        t[mask[k]] = depth_color(depth[k][mask[k]])
        tiles.append(upscale(t, s))
    rows.append(("depth", tiles))
    rows.append(("mask", [upscale(np.where(mask[k][..., None], 255, 0).astype(np.uint8).repeat(3, -1), s)
                          for k in views]))
    if "normal" in a:
        tiles = []
        for k in views:
            t = np.full((R, R, 3), 255, np.uint8)
            n = a["normal"][k][mask[k]].astype(np.float32)
            t[mask[k]] = np.round((n + 1) * 127.5).clip(0, 255).astype(np.uint8)
            tiles.append(upscale(t, s))
        rows.append(("normal", tiles))
    tiles, visible_counts = [], []
    for k in views:
        t = upscale(gray_backdrop(rgb[k]), s)
        sel = vis[:, k]
        pix, z = project(fused[sel], K[k].astype(np.float64), w2c[k].astype(np.float64))
        order = np.argsort(-z)  # far first: near points stay on top
        splat(t, (pix[order, 0] + 0.5) * s, (pix[order, 1] + 0.5) * s, depth_color(z[order]), dot)
        tiles.append(t)
        visible_counts.append(int(sel.sum()))
    rows.append(("points", tiles))

    # cloud pictures, colored by the RGB of each point's origin pixel
    origin = a["fused_origin"][:m].astype(np.int64)
    colors = rgb[origin[:, 0], origin[:, 1], origin[:, 2]] if m else np.zeros((0, 3), np.uint8)
    clouds = [cloud_view(fused, colors, az, el, CLOUD) for az, el, _ in CLOUD_ANGLES]

    grid_w = LABEL_W + len(views) * (T + GAP) + BAR_W
    width = max(grid_w, LABEL_W + len(CLOUD_ANGLES) * (CLOUD + GAP) + 10, 640)
    center = a["bounding_sphere"][:3]
    st = reader.settings
    header = text_image([f"{obj.category or '?'}   {obj.key}",  # wrapped where a line is wider than the sheet
                         f"split {obj.split}   shard {obj.shard} row {obj.row}",
                         f"{R}x{R} px, {V} views ({st.viewpoints.scheme}), fov {st.fov:g} deg   {m} fused points, "
                         f"{a['view_points'].shape[1]} per view"], width, size=16)
    header[-1:] = 200
    col_h = 18
    y0 = header.shape[0] + 4
    height = y0 + col_h + len(rows) * (T + GAP) + 26 + CLOUD + 8 + 70
    sheet = Image.new("RGB", (width, height), WHITE)
    sheet.paste(Image.fromarray(header), (0, 0))
    layout = {"scale": s, "resolution": R, "views": views, "tile": T, "panels": {}}
    for j, k in enumerate(views):
        az, el = view_angles(w2c[k], center)
        label(sheet, (LABEL_W + j * (T + GAP), y0), f"view {k}  az {az:.0f} el {el:.0f}", size=12)
    y = y0 + col_h
    for name, tiles in rows:
        label(sheet, (4, y + T // 2 - 8), name, size=15)
        boxes = []
        for j, tile in enumerate(tiles):
            x = LABEL_W + j * (T + GAP)
            sheet.paste(Image.fromarray(tile), (x, y))
            boxes.append([x, y, T, T])
            if name == "points":
                label(sheet, (x + 3, y + T - 16), f"{visible_counts[j]} visible", size=11, color=(60, 60, 60))
        layout["panels"][name] = boxes
        if name in ("depth", "points"):
            sheet.paste(Image.fromarray(scale_bar(T, lo, hi, "depth")), (LABEL_W + len(views) * (T + GAP), y))
        y += T + GAP
    label(sheet, (4, y + 4), f"fused cloud ({m} points) colored by the RGB of each point's origin pixel", size=14)
    y += 26
    boxes = []
    for j, (img, (_, _, name)) in enumerate(zip(clouds, CLOUD_ANGLES)):
        x = LABEL_W + j * (CLOUD + GAP)
        sheet.paste(Image.fromarray(img), (x, y))
        label(sheet, (x + 4, y + 4), name, size=12, color=(230, 230, 230))
        boxes.append([x, y, CLOUD, CLOUD])
    layout["panels"]["cloud"] = boxes
    y += CLOUD + 8
    guide = text_image([
        "How to read: depth in dataset units (the OBJ's for ShapeNet; blue near, red far; white = no surface). points: the fused points that the "
        "stored fused_visible flags call visible in",
        "that view, projected with the stored K and world_to_cam and colored by camera depth on a gray copy of the RGB. "
        "They must cover the object and nothing else;",
        "points off the object or a shifted/mirrored pattern mean a wrong mapping (cma-build validate measures it)."],
        width, size=12, color=(70, 70, 70))
    sheet.paste(Image.fromarray(guide), (0, y))
    return sheet.crop((0, 0, width, y + guide.shape[0])), layout


def category_grid(thumbs: list[tuple[ObjectRef, np.ndarray]], title: str, size: int = 128) -> Image.Image:
    """One labeled thumbnail per object, one row per category."""
    rows: dict[str, list[tuple[ObjectRef, np.ndarray]]] = defaultdict(list)
    for obj, img in thumbs:
        rows[obj.category or obj.synset_id].append((obj, img))
    cols = max(len(r) for r in rows.values())
    lw, cell_h = 120, size + 20
    width = max(lw + cols * (size + GAP), 480)
    head = text_image([title], width, size=16)
    sheet = Image.new("RGB", (width, head.shape[0] + len(rows) * (cell_h + GAP) + 4), WHITE)
    sheet.paste(Image.fromarray(head), (0, 0))
    y = head.shape[0]
    for cat in sorted(rows):
        label(sheet, (4, y + size // 2 - 8), f"{cat} ({len(rows[cat])})", size=14)
        for j, (obj, img) in enumerate(rows[cat]):
            x = lw + j * (size + GAP)
            sheet.paste(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS), (x, y))
            ImageDraw.Draw(sheet).rectangle([x - 1, y - 1, x + size, y + size], outline=(200, 200, 200))
            label(sheet, (x + 2, y + size + 2), obj.model_id[:16], size=11, color=(60, 60, 60))
        y += cell_h + GAP
    return sheet


def _save(img: Image.Image, path: Path, layout: dict | None = None) -> Path:
    """Write the PNG atomically: a new temporary file beside it (never an existing one, nor a link
    in its place), then renamed over ``path``."""
    info = PngImagePlugin.PngInfo()
    if layout is not None:
        info.add_text("cma-layout", json.dumps(layout))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            img.save(fh, format="PNG", pnginfo=info, optimize=False)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sheet_name(obj: ObjectRef) -> str:
    """The contact sheet's file name: CATEGORY_MODEL.png (the ids are safe names, checked on reading)."""
    return f"{obj.category or obj.synset_id}_{obj.model_id}.png"


def preview(path: str | os.PathLike, out: str | os.PathLike, ids: list[str] | None = None, n: int = 16,
            seed: int = 0, max_views: int = 12, show_progress: bool = True) -> list[Path]:
    """Write the sheets and grid.png; returns their paths (sheets first)."""
    if n < 1:
        raise CmaError(f"--n must be at least 1, got {n}")
    if seed < 0:
        raise CmaError(f"--seed must be at least 0, got {seed}")
    if max_views < 1:
        raise CmaError(f"--max-views must be at least 1, got {max_views}")
    reader = DatasetReader.open(path)
    objs = choose(reader, ids, n, seed)
    reader.verify(objs)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise CmaError(f"--out {out}: is a file; expected a folder for the PNGs")
    check_output_dir(out, "--out")
    check_inside(out, [*(sheet_name(o) for o in objs), "grid.png"])
    out.mkdir(parents=True, exist_ok=True)
    written, thumbs = [], []
    for obj in progress(objs, desc="preview", unit="obj", enabled=show_progress):
        a = reader.load(obj)
        sheet, layout = contact_sheet(a, obj, reader, max_views)
        written.append(_save(sheet, out / sheet_name(obj), layout))
        best = int(np.argmax(a["view_foreground"]))
        thumbs.append((obj, a["rgb"][best]))
    title = f"{reader.root.name}: {len(objs)} objects, {len({o.synset_id for o in objs})} categories"
    written.append(_save(category_grid(thumbs, title), out / "grid.png"))
    return written
