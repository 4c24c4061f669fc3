"""Small scenes with known answers, written as ShapeNet-layout models: boxes and open boxes made of
axis-aligned rectangles (the rectangles are also the closed-form visibility oracle), flat planes
of one material, and double-sided copies of models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle: coordinate ``axis`` = ``value``, the other two within ``lo``..``hi``."""

    axis: int
    value: float
    lo: tuple[float, float]
    hi: tuple[float, float]

    @property
    def others(self) -> tuple[int, int]:
        return tuple(i for i in range(3) if i != self.axis)

    def corners(self) -> np.ndarray:
        a, b = self.others
        out = np.zeros((4, 3))
        out[:, self.axis] = self.value
        for n, (i, j) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
            out[n, a] = (self.lo[0], self.hi[0])[i]
            out[n, b] = (self.lo[1], self.hi[1])[j]
        return out


def box(lo, hi, open_top: bool = False) -> list[Rect]:
    """The faces of an axis-aligned box (without the +Y face when ``open_top``)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    rects = []
    for axis in range(3):
        a, b = (i for i in range(3) if i != axis)
        for value in (lo[axis], hi[axis]):
            if open_top and axis == 1 and value == hi[1]:
                continue
            rects.append(Rect(axis, float(value), (lo[a], lo[b]), (hi[a], hi[b])))
    return rects


def write_model(root: Path, synset: str, model_id: str, parts: list[tuple[list[Rect], str]],
                materials: dict[str, str]) -> Path:
    """A model of rectangles (two triangles each) in ShapeNet's layout; ``parts`` pairs rectangles
    with a material name, ``materials`` maps names to MTL statements."""
    models = root / synset / model_id / "models"
    models.mkdir(parents=True)
    lines, faces, n = ["mtllib model_normalized.mtl"], [], 0
    for rects, material in parts:
        faces.append(f"usemtl {material}")
        for r in rects:
            for p in r.corners():
                lines.append("v %.6f %.6f %.6f" % tuple(p))
            faces += [f"f {n + 1} {n + 2} {n + 3}", f"f {n + 1} {n + 3} {n + 4}"]
            n += 4
    (models / "model_normalized.obj").write_text("\n".join(lines + faces) + "\n")
    (models / "model_normalized.mtl").write_text("".join(f"newmtl {k}\n{v}\n" for k, v in materials.items()))
    (models / "model_normalized.json").write_text("{}")
    return models / "model_normalized.obj"


def write_sphere(root: Path, synset: str, model_id: str, n: int = 120, kd: str = "0.2 0.4 0.9") -> Path:
    """A UV sphere of 4 n^2 triangles (radius 0.4) in ShapeNet's layout."""
    models = root / synset / model_id / "models"
    models.mkdir(parents=True)
    th, ph = np.meshgrid(np.linspace(0, np.pi, n + 1), np.linspace(0, 2 * np.pi, 2 * n + 1), indexing="ij")
    pts = 0.4 * np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    lines = ["mtllib model_normalized.mtl"] + ["v %.6f %.6f %.6f" % tuple(p) for p in pts] + ["usemtl front"]
    row = 2 * n + 1
    for i in range(n):
        for j in range(2 * n):
            a, b = i * row + j + 1, (i + 1) * row + j + 1
            lines += [f"f {a} {b} {b + 1}", f"f {a} {b + 1} {a + 1}"]
    (models / "model_normalized.obj").write_text("\n".join(lines) + "\n")
    (models / "model_normalized.mtl").write_text(f"newmtl front\nKd {kd}\nKs 0.4 0.4 0.4\nNs 10\n")
    (models / "model_normalized.json").write_text("{}")
    return models / "model_normalized.obj"


def make_double_sided(obj: Path, back_material: str = "back_side", kd: str = "0.9 0.2 0.1") -> None:
    """Append every face again with reversed winding and another material, as many ShapeNet
    models are: the two copies share their vertices and lie exactly on top of each other."""
    text = obj.read_text().splitlines()
    faces = [line for line in text if line.startswith("f ")]
    reversed_faces = ["f " + " ".join(reversed(line.split()[1:])) for line in faces]
    obj.write_text("\n".join(text + [f"usemtl {back_material}"] + reversed_faces) + "\n")
    mtl = obj.with_suffix(".mtl")
    mtl.write_text(mtl.read_text() + f"\nnewmtl {back_material}\nKd {kd}\nKs 0.4 0.4 0.4\nNs 10\n")


def segment_occluded(rects: list[Rect], origin: np.ndarray, point: np.ndarray, tolerance: float,
                     eps: float = 1e-5) -> tuple[bool, bool]:
    """Closed form: does the segment origin -> point cross a rectangle more than ``tolerance``
    before the point? Returns (occluded, ambiguous); ambiguous when a crossing lies within
    ``eps`` of a rectangle's border or of the tolerance, where float32 may decide either way."""
    d = point - origin
    length = float(np.linalg.norm(d))
    occluded = ambiguous = False
    for r in rects:
        if abs(d[r.axis]) < 1e-12:
            continue
        s = (r.value - origin[r.axis]) / d[r.axis]
        gap = (1 - s) * length  # how far before the point the plane is crossed
        if s <= 0 or gap < tolerance - eps:
            continue  # behind the camera, or the point's own surface (or beyond the point)
        q = origin + s * d
        a, b = r.others
        margin = min(q[a] - r.lo[0], r.hi[0] - q[a], q[b] - r.lo[1], r.hi[1] - q[b])
        if margin < -eps:
            continue  # misses the rectangle
        if margin <= eps or gap <= tolerance + eps:
            ambiguous = True
        else:
            occluded = True
    return occluded, ambiguous and not occluded
