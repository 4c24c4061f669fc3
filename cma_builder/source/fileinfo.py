"""What a mesh file holds, found without Blender: counts and defects of one source file.

Each format has one inspector (``inspect_<format>(path) -> FileInfo``); :func:`inspect_file`
picks it by format. Inspectors never raise on a bad file: defects become :class:`Problem`
values (``error``: the object cannot render; ``warn``: it renders degraded; ``note``: harmless).
They never allocate from counts a header claims: a claim is checked against the file's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cma_builder.source.objfile import Problem

FORMATS = ("obj", "glb", "gltf", "ply", "stl", "off")
SUFFIXES = {f".{f}": f for f in FORMATS}


@dataclass
class FileInfo:
    n_meshes: int = 0  # glTF meshes / OBJ objects / 1 for single-mesh formats
    n_vertices: int = 0
    n_triangles: int = 0  # after triangulating polygons (points and lines excluded)
    n_materials: int = 0
    n_transparent: int = 0  # OBJ: d < 1 (or Tr > 0); glTF: alphaMode BLEND or MASK
    n_animations: int = 0
    n_armatures: int = 0  # glTF skins
    vertex_colors: bool = False
    textures: list[str] = field(default_factory=list)  # as the file references them
    textures_missing: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)  # glTF extensionsUsed
    problems: list[Problem] = field(default_factory=list)


class FileDefect(Exception):
    """A defect that makes a file unusable, raised inside an inspector or reader: ``code`` (the
    manifest's problem code) and a one-line ``detail``; inspectors turn it into an error Problem."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def format_of(path: str | Path) -> str | None:
    """The format a file name says (case-insensitive suffix), or None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def inspect_file(path: str | Path, fmt: str, root: str | Path | None = None) -> FileInfo:
    """Inspect one source file of format ``fmt`` (one of FORMATS). Files it refers to (MTL files,
    textures, glTF buffers and images) must lie inside ``root`` (the collection; None: anywhere)."""
    path = Path(path)
    if fmt == "obj":
        from cma_builder.source.objfile import inspect_obj_file as inspect
    elif fmt in ("glb", "gltf"):
        from cma_builder.source.gltffile import inspect_gltf as inspect
    elif fmt == "ply":
        from cma_builder.source.plystl import inspect_ply as inspect
    elif fmt == "stl":
        from cma_builder.source.plystl import inspect_stl as inspect
    elif fmt == "off":
        from cma_builder.source.offfile import inspect_off as inspect
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return inspect(path, root) if fmt in ("obj", "glb", "gltf") else inspect(path)
