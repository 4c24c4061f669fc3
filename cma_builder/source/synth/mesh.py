"""Mesh primitives and an OBJ/MTL writer that normalizes like ShapeNetCore.v2.

Parts are triangle meshes with per-vertex normals and UVs (one index for all three), built
in design units with Y up and -Z front. :func:`write_obj` centers the unique vertex
positions at their mean, scales the bounding-box diagonal to 1 (as ShapeNetCore.v2's
``model_normalized.obj``), and writes deduplicated ``v``/``vt``/``vn`` records with
``f v/vt/vn`` faces grouped per part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Part:
    v: np.ndarray  # (n, 3) positions
    n: np.ndarray  # (n, 3) unit normals
    uv: np.ndarray  # (n, 2)
    tris: np.ndarray  # (m, 3) vertex indices, counter-clockwise seen from outside

    def transformed(self, matrix=None, offset=(0.0, 0.0, 0.0)) -> "Part":
        """Apply ``x -> matrix @ x + offset``; normals use the inverse transpose."""
        m = np.eye(3) if matrix is None else np.asarray(matrix, dtype=np.float64)
        v = self.v @ m.T + np.asarray(offset, dtype=np.float64)
        n = self.n @ np.linalg.inv(m)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        tris = self.tris if np.linalg.det(m) > 0 else self.tris[:, ::-1]
        return Part(v, n, self.uv.copy(), tris.copy())

    def moved(self, x=0.0, y=0.0, z=0.0) -> "Part":
        return self.transformed(offset=(x, y, z))


def rot_x(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _orient(v: np.ndarray, n: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Flip triangles whose geometric normal disagrees with their vertex normals."""
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    geo = np.cross(b - a, c - a)
    want = n[tris].sum(axis=1)
    flip = (geo * want).sum(axis=1) < 0
    out = tris.copy()
    out[flip] = out[flip][:, ::-1]
    return out


def _drop_degenerate(v: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    return tris[area > 1e-12]


def _part(v, n, uv, tris) -> Part:
    v = np.asarray(v, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    tris = _drop_degenerate(v, np.asarray(tris, dtype=np.int64))
    return Part(v, n, np.asarray(uv, dtype=np.float64), _orient(v, n, tris))


# Corner order of a hexahedron: bottom 0-3, top 4-7, each counter-clockwise seen from +Y.
_HEX_FACES = ((0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))


def hexahedron(corners, uv_scale: float = 1.0) -> Part:
    """A six-sided cell from 8 corners (tapered boxes, swept wings); flat-shaded quads."""
    c = np.asarray(corners, dtype=np.float64)
    center = c.mean(axis=0)
    v, n, uv, tris = [], [], [], []
    for face in _HEX_FACES:
        q = c[list(face)]
        normal = np.cross(q[2] - q[0], q[3] - q[1])
        if np.dot(normal, q.mean(axis=0) - center) < 0:
            normal = -normal
        normal /= np.linalg.norm(normal)
        # UVs: project onto the face plane in design units.
        axis_u = q[1] - q[0]
        axis_u /= np.linalg.norm(axis_u)
        axis_v = np.cross(normal, axis_u)
        base = len(v)
        for p in q:
            v.append(p)
            n.append(normal)
            uv.append(((p - q[0]) @ axis_u * uv_scale, (p - q[0]) @ axis_v * uv_scale))
        tris += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return _part(v, n, uv, tris)


def box(sx: float, sy: float, sz: float, uv_scale: float = 1.0) -> Part:
    """Axis-aligned box centered at the origin."""
    x, y, z = sx / 2, sy / 2, sz / 2
    corners = [(-x, -y, -z), (x, -y, -z), (x, -y, z), (-x, -y, z), (-x, y, -z), (x, y, -z), (x, y, z), (-x, y, z)]
    return hexahedron(corners, uv_scale)


def lathe(profile, segments: int = 32, uv_scale: float = 1.0, u_repeat: float = 1.0) -> Part:
    """Revolve a closed (r, y) polygon about the Y axis. Edges on the axis are skipped, so a
    profile running from the axis out and back to the axis gives a closed solid.
    Each profile edge gets its own rings: sharp along the profile, smooth around the axis."""
    p = np.asarray(profile, dtype=np.float64)
    theta = np.linspace(0.0, 2 * np.pi, segments + 1)
    cos, sin = np.cos(theta), np.sin(theta)
    # Outward 2D normal of each edge: right-hand side for a counter-clockwise (r, y) polygon.
    signed_area = np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    orient = 1.0 if signed_area > 0 else -1.0
    arc = 0.0
    v, n, uv, tris = [], [], [], []
    for i in range(len(p)):
        (r0, y0), (r1, y1) = p[i], p[(i + 1) % len(p)]
        length = float(np.hypot(r1 - r0, y1 - y0))
        if (r0 <= 1e-12 and r1 <= 1e-12) or length < 1e-12:
            continue
        nr, ny = orient * (y1 - y0) / length, orient * -(r1 - r0) / length
        base = len(v)
        for r, y, a in ((r0, y0, arc), (r1, y1, arc + length)):
            for k in range(segments + 1):
                v.append((r * cos[k], y, r * sin[k]))
                n.append((nr * cos[k], ny, nr * sin[k]))
                uv.append((theta[k] / (2 * np.pi) * u_repeat, a * uv_scale))
        for k in range(segments):
            a0, a1 = base + k, base + k + 1
            b0, b1 = base + segments + 1 + k, base + segments + 2 + k
            tris += [(a0, b0, b1), (a0, b1, a1)]
        arc += length
    return _part(v, n, uv, tris)


def cylinder(radius: float, height: float, segments: int = 32, radius_top: float | None = None,
             uv_scale: float = 1.0) -> Part:
    """Capped (optionally tapered) cylinder along +Y from y=0 to y=height."""
    rt = radius if radius_top is None else radius_top
    return lathe([(0, 0), (radius, 0), (rt, height), (0, height)], segments, uv_scale)


def sphere(radius: float, segments: int = 24, rings: int = 12) -> Part:
    ang = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)
    profile = [(radius * np.cos(a), radius * np.sin(a)) for a in ang]
    profile[0], profile[-1] = (0.0, -radius), (0.0, radius)
    # Per-edge normals would facet a sphere; compute smooth normals from positions instead.
    part = lathe(profile, segments)
    part.n = part.v / np.linalg.norm(part.v, axis=1, keepdims=True)
    part.tris = _orient(part.v, part.n, part.tris)
    return part


def tube(path, radius: float, segments: int = 16) -> Part:
    """Sweep a circle along a polyline (k, 3); both ends capped."""
    path = np.asarray(path, dtype=np.float64)
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0]) if abs(tangents[0][2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    theta = np.linspace(0.0, 2 * np.pi, segments + 1)
    v, n, uv, tris = [], [], [], []
    side = np.cross(tangents[0], ref)
    for i, (pt, t) in enumerate(zip(path, tangents)):
        side = side - np.dot(side, t) * t  # parallel transport of the frame
        side /= np.linalg.norm(side)
        up = np.cross(t, side)
        for k, a in enumerate(theta):
            d = np.cos(a) * side + np.sin(a) * up
            v.append(pt + radius * d)
            n.append(d)
            uv.append((a / (2 * np.pi), i / max(len(path) - 1, 1)))
    ring = segments + 1
    for i in range(len(path) - 1):
        for k in range(segments):
            a0, a1, b0, b1 = i * ring + k, i * ring + k + 1, (i + 1) * ring + k, (i + 1) * ring + k + 1
            tris += [(a0, b0, b1), (a0, b1, a1)]
    for end, sign in ((0, -1.0), (len(path) - 1, 1.0)):
        center_idx = len(v)
        normal = sign * tangents[end]
        v.append(path[end])
        n.append(normal)
        uv.append((0.5, 0.5))
        ring_idx = []
        for k in range(segments):
            ring_idx.append(len(v))
            v.append(v[end * ring + k])
            n.append(normal)
            uv.append((0.5 + 0.5 * np.cos(theta[k]), 0.5 + 0.5 * np.sin(theta[k])))
        for k in range(segments):
            tris.append((center_idx, ring_idx[k], ring_idx[(k + 1) % segments]))
    return _part(v, n, uv, tris)


@dataclass
class Material:
    name: str
    kd: tuple[float, float, float]
    d: float = 1.0  # opacity, as in MTL
    texture: str | None = None  # file name in ../images/


@dataclass
class Model:
    """Named parts, each with one material."""

    materials: list[Material] = field(default_factory=list)
    parts: list[tuple[str, int, Part]] = field(default_factory=list)  # (group name, material index, part)

    def material(self, kd, d: float = 1.0, texture: str | None = None) -> int:
        self.materials.append(Material(f"material_{len(self.materials)}", tuple(float(x) for x in kd), d, texture))
        return len(self.materials) - 1

    def add(self, name: str, material: int, *parts: Part) -> None:
        for i, part in enumerate(parts):
            self.parts.append((name if len(parts) == 1 else f"{name}_{i}", material, part))


def _unique_rows(strings: list[str]) -> tuple[list[str], np.ndarray]:
    """Deduplicate formatted records: (unique records in first-seen order, 1-based index per input)."""
    index: dict[str, int] = {}
    idx = np.empty(len(strings), dtype=np.int64)
    for i, s in enumerate(strings):
        idx[i] = index.setdefault(s, len(index) + 1)
    return list(index), idx


def _fmt(arr: np.ndarray) -> list[str]:
    return [" ".join(f"{x:.6f}" for x in row).replace("-0.000000", "0.000000") for row in arr]


@dataclass
class ObjText:
    obj: str
    mtl: str
    stats: dict  # ShapeNet model_normalized.json content (pre-normalization min/max/centroid)


def write_obj(model: Model, model_id: str, mtl_name: str = "model_normalized.mtl") -> ObjText:
    """Normalize and serialize a model to OBJ + MTL text (deterministic)."""
    all_v = np.concatenate([p.v for _, _, p in model.parts])
    unique = np.unique(np.round(all_v, 9), axis=0)
    centroid = unique.mean(axis=0)
    lo, hi = unique.min(axis=0), unique.max(axis=0)
    scale = 1.0 / float(np.linalg.norm(hi - lo))

    v_rec, v_idx = _unique_rows(_fmt((all_v - centroid) * scale))
    all_uv = np.concatenate([p.uv for _, _, p in model.parts])
    t_rec, t_idx = _unique_rows(_fmt(all_uv))
    all_n = np.concatenate([p.n for _, _, p in model.parts])
    n_rec, n_idx = _unique_rows(_fmt(all_n))

    lines = ["# Procedural mini-ShapeNet model written by cma-build synth", "", f"mtllib {mtl_name}", "",
             f"# {len(v_rec)} vertex positions"]
    lines += [f"v {r}" for r in v_rec]
    lines += ["", f"# {len(t_rec)} UV coordinates"] + [f"vt {r}" for r in t_rec]
    lines += ["", f"# {len(n_rec)} vertex normals"] + [f"vn {r}" for r in n_rec]
    offset = 0
    for name, mat, part in model.parts:
        lines += ["", f"# Mesh '{name}' with {len(part.tris)} faces", f"g {name}", f"usemtl {model.materials[mat].name}"]
        for tri in part.tris + offset:
            lines.append("f " + " ".join(f"{v_idx[i]}/{t_idx[i]}/{n_idx[i]}" for i in tri))
        offset += len(part.v)
    obj = "\n".join(lines) + "\n"

    mtl_lines = ["# Materials of a procedural mini-ShapeNet model written by cma-build synth"]
    for m in model.materials:
        mtl_lines += ["", f"newmtl {m.name}", "Kd " + " ".join(f"{c:.6f}" for c in m.kd), "Ka 0 0 0",
                      "Ks 0.4 0.4 0.4", "Ke 0 0 0", f"d {m.d:g}", "Ns 10", "illum 2"]
        if m.texture:
            mtl_lines.append(f"map_Kd ../images/{m.texture}")
    mtl = "\n".join(mtl_lines) + "\n"

    stats = {
        "max": [round(float(x), 6) for x in hi],
        "centroid": [float(x) for x in centroid],
        "id": model_id,
        "numVertices": len(v_rec),
        "min": [round(float(x), 6) for x in lo],
    }
    return ObjText(obj, mtl, stats)
