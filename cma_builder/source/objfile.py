"""Inspect Wavefront OBJ/MTL files: counts, material and texture references, and defects.

Defects are returned as :class:`Problem` values (never raised), so one bad model becomes a
manifest row instead of stopping a scan. ``error`` problems make a model unusable
(missing, truncated, empty, out-of-range indices, non-finite vertices); ``warn`` problems
degrade its appearance (missing MTL or texture). Harmless quirks are ``note``.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cma_builder.paths import leads_outside


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" | "warn" | "note"
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def error(code: str, detail: str) -> Problem:
    return Problem("error", code, detail)


def warn(code: str, detail: str) -> Problem:
    return Problem("warn", code, detail)


def note(code: str, detail: str) -> Problem:
    return Problem("note", code, detail)


@dataclass
class ObjInfo:
    n_vertices: int = 0
    n_uvs: int = 0
    n_normals: int = 0
    n_faces: int = 0  # 'f' records (polygons; ShapeNet's are triangles)
    n_triangles: int = 0  # after fan-triangulating the polygons
    mtllibs: list[str] = field(default_factory=list)
    materials_used: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# assimp (which wrote ShapeNetCore.v2's OBJs) declares counts in comments, and so does
# cma-build synth; a file with fewer records than declared was cut short. The per-mesh
# face count includes line ('l') records.
_DECLARED = {
    "v": re.compile(rb"^#\s*(\d+) vertex positions", re.M),
    "vt": re.compile(rb"^#\s*(\d+) UV coordinates", re.M),
    "vn": re.compile(rb"^#\s*(\d+) vertex normals", re.M),
    "f": re.compile(rb"^#\s*Mesh '.*' with (\d+) faces", re.M),
}
_DECLARED_NAMES = {"v": "vertex positions", "vt": "UV coordinates", "vn": "vertex normals", "f": "faces and lines"}
_KINDS = (b"v", b"vt", b"vn", b"f", b"l", b"mtllib", b"usemtl", b"#")
_CORNER = re.compile(rb"^(-?\d+)(?:/(-?\d*))?(?:/(-?\d+))?$")
_MIN_ARGS = {b"v": 3, b"vn": 3, b"vt": 1, b"f": 3, b"l": 2}


def _short(line: bytes, n: int = 40) -> str:
    text = line.decode("utf-8", "replace").strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def _records(data: bytes) -> dict[bytes, list[bytes]]:
    """Record payloads by keyword (v, vt, vn, f, l, mtllib, usemtl, #) in file order."""
    out: dict[bytes, list[bytes]] = {k: [] for k in _KINDS}
    for line in data.splitlines():
        head, _, rest = line.strip().partition(b" ")
        if head.startswith(b"#"):
            out[b"#"].append(line)
        elif head in out:
            out[head].append(rest)
        elif b"\t" in head:  # tab-separated keyword
            head, _, rest = line.strip().partition(b"\t")
            if head in out:
                out[head].append(rest)
    return out


def _last_record_incomplete(data: bytes) -> str | None:
    """Describe the last line if it is a geometry record cut mid-way, else None."""
    last = data.rstrip(b"\r\n\t ").rsplit(b"\n", 1)[-1].strip()
    parts = last.split()
    if not parts or parts[0] not in _MIN_ARGS:
        return None
    kind, args = parts[0], parts[1:]
    if len(args) < _MIN_ARGS[kind]:
        return f"last line is incomplete: '{_short(last)}'"
    if kind in (b"f", b"l"):
        bad = any(not _CORNER.match(a) or a.endswith(b"/") for a in args)
    else:
        bad = _numbers(args, float) is None
    return f"last line is incomplete: '{_short(last)}'" if bad else None


def _numbers(tokens: list[bytes], kind) -> list | None:
    try:
        return [kind(t) for t in tokens]
    except ValueError:
        return None


def numbers(blob: bytes, dtype) -> np.ndarray | None:
    """Whitespace-separated numbers parsed in C; None (not a warning) on unparsable text."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy's "could not be read to its end"
        try:
            return np.fromstring(blob, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _parse_table(payloads: list[bytes], width: int) -> np.ndarray | None:
    """(n, width) float array of the first ``width`` numbers of each record, None if malformed."""
    if not payloads:
        return np.zeros((0, width))
    blob = b" ".join(payloads)
    flat = numbers(blob, np.float64) if b"," not in blob else None
    if flat is not None and flat.size == width * len(payloads):  # fast path
        return flat.reshape(-1, width)
    rows = [p.split()[:width] for p in payloads]
    if any(len(r) < width for r in rows):
        return None
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        return None


def inspect_obj(data: bytes) -> ObjInfo:
    """Count the records of an OBJ file and find defects. Never raises on bad content."""
    info = ObjInfo()
    if b"\x00" in data[:65536]:
        info.problems.append(error("obj_unreadable", "binary data, not a text OBJ"))
        return info
    rec = _records(data)
    info.n_vertices, info.n_uvs = len(rec[b"v"]), len(rec[b"vt"])
    info.n_normals, info.n_faces = len(rec[b"vn"]), len(rec[b"f"])
    info.mtllibs = [m.decode("utf-8", "replace").strip() for m in rec[b"mtllib"]]
    info.materials_used = list(dict.fromkeys(m.decode("utf-8", "replace").strip() for m in rec[b"usemtl"]))

    truncated = _last_record_incomplete(data)
    comments = b"\n".join(rec[b"#"])
    declared = {kind: sum(int(x) for x in rx.findall(comments)) for kind, rx in _DECLARED.items()}
    if not truncated and any(declared.values()):
        # Writers that declare their counts (assimp, cma-build synth) end the file with a newline.
        if not data.endswith(b"\n"):
            truncated = "file ends mid-line (its writer ends OBJs with a newline)"
        have = {"v": info.n_vertices, "vt": info.n_uvs, "vn": info.n_normals, "f": info.n_faces + len(rec[b"l"])}
        for kind, want in declared.items():
            if not truncated and want and have[kind] < want:
                truncated = f"has {have[kind]} of the {want} {_DECLARED_NAMES[kind]} its header declares"
    if truncated:
        info.problems.append(error("obj_truncated", truncated))

    if info.n_vertices == 0 or info.n_faces == 0:
        info.problems.append(error("obj_empty", f"{info.n_vertices} vertices, {info.n_faces} faces"))
        return info

    verts = _parse_table(rec[b"v"], 3)
    if verts is None:
        info.problems.append(error("obj_malformed", "a 'v' record does not hold 3 numbers"))
    else:
        bad = int((~np.isfinite(verts).all(axis=1)).sum())
        if bad:
            info.problems.append(error("obj_nonfinite", f"{bad} vertices with NaN or infinite coordinates"))
    _check_faces(rec[b"f"], info)
    return info


_ONE_SLASH = re.compile(rb"(?<!\S)(-?\d+/-?\d+)(?=\s|$)")
_NO_SLASH = re.compile(rb"(?<!\S)(-?\d+)(?=\s|$)")


def _face_indices(faces: list[bytes]) -> list[np.ndarray] | str:
    """Per slot (v, vt, vn) the int indices of all face corners (0 where a corner has no
    such index), or a description of the first malformed corner."""
    blob = b" ".join(faces)
    n_tokens = len(blob.split())
    # Rewrite every corner as v/vt/vn with 0 for absent slots (OBJ indices are never 0),
    # then parse all numbers at C speed. Mixed layouts (v//vn next to v/vt/vn) are common.
    norm = blob.replace(b"//", b"/0/")  # ShapeNet mixes only v//vn and v/vt/vn
    if norm.count(b"/") != 2 * n_tokens:
        norm = _NO_SLASH.sub(rb"\1/0/0", _ONE_SLASH.sub(rb"\1/0", norm))
    if norm.count(b"/") == 2 * n_tokens:
        flat = numbers(norm.replace(b"/", b" "), np.int64)
        if flat is not None and flat.size == 3 * n_tokens:
            cols = flat.reshape(n_tokens, 3)
            return [cols[:, j] for j in range(3)]
    bad = next((t for t in blob.split() if not _CORNER.match(t)), blob.split()[0])
    return f"face corner '{_short(bad)}' is not v[/vt][/vn]"


def _check_faces(faces: list[bytes], info: ObjInfo) -> None:
    slots = _face_indices(faces)
    if isinstance(slots, str):
        info.problems.append(error("obj_malformed", slots))
        return
    sizes = np.fromiter(map(len, map(bytes.split, faces)), np.int64, len(faces))
    info.n_triangles = int(np.maximum(sizes - 2, 0).sum())
    if sizes.min() < 3:
        info.problems.append(error("obj_malformed", "a face has fewer than 3 corners"))
    for j, (idx, count, label) in enumerate(
        zip(slots, (info.n_vertices, info.n_uvs, info.n_normals), ("vertex", "UV", "normal"))
    ):
        if j > 0:
            idx = idx[idx != 0]  # 0 marks a corner without this slot
        if idx.size == 0:
            continue
        lo, hi = int(idx.min()), int(idx.max())
        # Positive indices are 1-based; negative ones count back from the end (relative).
        if hi > count or lo == 0 or lo < -count:
            worst = hi if hi > count else lo
            info.problems.append(
                error("obj_bad_index", f"a face uses {label} index {worst}; the file has {count} {label} records")
            )
            return


@dataclass
class MtlInfo:
    materials: list[str] = field(default_factory=list)
    transparent: list[str] = field(default_factory=list)  # materials with d < 1 (or Tr > 0)
    textures: list[tuple[str, str]] = field(default_factory=list)  # (statement, path as written)


_TEXTURE_STATEMENTS = {"bump", "disp", "decal", "refl", "norm"}
# MTL texture options and how many arguments each takes (-o/-s/-t take 1-3 numbers).
_TEXTURE_OPTIONS = {"-blendu": 1, "-blendv": 1, "-bm": 1, "-boost": 1, "-cc": 1, "-clamp": 1,
                    "-imfchan": 1, "-mm": 2, "-texres": 1, "-type": 1, "-o": 3, "-s": 3, "-t": 3}


def _texture_path(args: list[str]) -> str:
    """The file name of a texture statement, skipping its options."""
    i = 0
    while i < len(args) and args[i] in _TEXTURE_OPTIONS:
        n = _TEXTURE_OPTIONS[args[i]]
        i += 1
        taken = 0
        while taken < n and i < len(args):
            if n == 3 and taken >= 1:
                try:
                    float(args[i])
                except ValueError:
                    break
            i += 1
            taken += 1
    return " ".join(args[i:])


def parse_mtl(text: str) -> MtlInfo:
    info = MtlInfo()
    current = None
    for raw in text.splitlines():
        parts = raw.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        key, args = parts[0], parts[1:]
        low = key.lower()
        if low == "newmtl":
            current = " ".join(args)
            info.materials.append(current)
        elif low in ("d", "tr") and args and current is not None:
            try:
                value = float(args[0])
            except ValueError:
                continue
            opacity = value if low == "d" else 1.0 - value
            if opacity < 1.0 and current not in info.transparent:
                info.transparent.append(current)
        elif (low.startswith("map_") or low in _TEXTURE_STATEMENTS) and args:
            path = _texture_path(args)
            if path:
                info.textures.append((key, path))
    return info


_MAGIC = [
    (b"\xff\xd8\xff", "jpeg", {".jpg", ".jpeg"}),
    (b"\x89PNG\r\n\x1a\n", "png", {".png"}),
    (b"GIF8", "gif", {".gif"}),
    (b"BM", "bmp", {".bmp"}),
    (b"II*\x00", "tiff", {".tif", ".tiff"}),
    (b"MM\x00*", "tiff", {".tif", ".tiff"}),
]


def image_kind(path: Path) -> tuple[str | None, bool]:
    """(format sniffed from the first bytes or None, whether the extension agrees)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    for magic, kind, exts in _MAGIC:
        if head.startswith(magic):
            return kind, path.suffix.lower() in exts
    return None, True


@dataclass
class MaterialRefs:
    """What an OBJ's MTL files define and reference, looked up next to the OBJ."""

    n_materials: int = 0
    n_transparent: int = 0
    textures: list[str] = field(default_factory=list)  # as the MTL writes them
    textures_missing: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


MTL_MAX_BYTES = 64 << 20  # an MTL larger than this is not read (real ones are kilobytes)


def inspect_materials(obj_dir: Path, mtllibs: list[str], used: list[str], root: Path | None = None) -> MaterialRefs:
    """Read the MTL files an OBJ names (relative to ``obj_dir``) and check what they reference.
    MTL files and textures must lie inside ``root`` (the collection; error ``path_outside``): Blender's
    importer would read them."""
    out = MaterialRefs()
    if not mtllibs:
        out.problems.append(warn("mtl_missing", "the OBJ names no mtllib"))
        return out
    materials: list[str] = []
    read_any = False
    for name in mtllibs:
        path = obj_dir / name.replace("\\", "/")
        if leads_outside(root, path):
            out.problems.append(error("path_outside", f"mtllib {name} leads outside {root}"))
            continue
        try:
            if path.exists() and not path.is_file():
                out.problems.append(warn("mtl_missing", f"{name} (named by mtllib) is not a regular file"))
                continue
            if path.exists() and path.stat().st_size > MTL_MAX_BYTES:
                out.problems.append(warn("mtl_missing", f"{name} is larger than {MTL_MAX_BYTES >> 20} MiB; not read"))
                continue
            text = path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            out.problems.append(warn("mtl_missing", f"{name} (named by mtllib) does not exist"))
            continue
        except OSError as exc:
            out.problems.append(warn("mtl_missing", f"{name}: {exc.strerror}"))
            continue
        read_any = True
        mtl = parse_mtl(text)
        materials += mtl.materials
        out.n_transparent += len(mtl.transparent)
        for statement, tex in mtl.textures:
            if statement.lower() == "map_d":
                out.problems.append(note("alpha_map", f"{tex} is an alpha (map_d) texture"))
            if tex not in out.textures:
                out.textures.append(tex)
                out.problems += _inspect_texture(obj_dir, statement, tex, out, root)
    out.n_materials = len(materials)
    undefined = [m for m in used if m not in materials]
    if undefined and read_any:
        out.problems.append(warn("material_undefined", f"usemtl {', '.join(undefined[:3])} not defined in the MTL"))
    return out


def _inspect_texture(obj_dir: Path, statement: str, tex: str, refs: MaterialRefs,
                     root: Path | None = None) -> list[Problem]:
    path = Path(os.path.normpath(obj_dir / tex.replace("\\", "/")))
    if leads_outside(root, path):
        return [error("path_outside", f"{tex} ({statement}) leads outside {root}")]
    if not path.is_file():
        refs.textures_missing.append(tex)
        return [warn("texture_missing", f"{tex} ({statement}) does not exist")]
    try:
        if path.stat().st_size == 0:
            return [warn("texture_unreadable", f"{tex} is an empty file")]
        kind, ext_ok = image_kind(path)
    except OSError as exc:
        return [warn("texture_unreadable", f"{tex}: {exc.strerror}")]
    if kind is not None and not ext_ok:
        return [note("texture_ext_mismatch", f"{tex} holds {kind.upper()} data")]
    return []


def inspect_obj_file(path: Path, root: Path | None = None):
    """The FileInfo of an OBJ (any collection's): its records, its MTL files and their textures
    (inside ``root``)."""
    from cma_builder.source.fileinfo import FileInfo

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileInfo(problems=[error("file_unreadable", exc.strerror or str(exc))])
    info = inspect_obj(data)
    refs = inspect_materials(Path(path).parent, info.mtllibs, info.materials_used, root)
    return FileInfo(n_meshes=1 if info.n_faces else 0, n_vertices=info.n_vertices, n_triangles=info.n_triangles,
                    n_materials=refs.n_materials, n_transparent=refs.n_transparent, textures=refs.textures, textures_missing=refs.textures_missing,
                    problems=info.problems + refs.problems)
