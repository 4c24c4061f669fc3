"""Read Object File Format (OFF) meshes, ModelNet's format (Blender has no OFF importer).

:func:`read_off` parses the bytes of an OFF file into an :class:`OffMesh` or raises
:class:`OffError` (``code`` starting ``off_``, a one-line ``detail``); :func:`inspect_off` turns
the outcome into a :class:`FileInfo`. The file is read line by line: a header keyword, the counts
``nv nf [ne]`` (on the header line or the next one; ``ne`` is ignored), ``nv`` vertex records
``x y z [nx ny nz] [r g b [a]] [s t]`` and ``nf`` face records ``n i0 ... i(n-1) [r g b [a]]``
(0-based indices, any ``n >= 3``).

Accepted: the keyword ``OFF`` with the prefixes ``ST``, ``C`` and ``N`` (``COFF``, ``NOFF``,
``CNOFF``, ``STOFF``...; normals and texture coordinates are read and dropped), the keyword run
together with the counts (``OFF490 518 0``, as part of ModelNet40's files begin; a note),
leading whitespace, ``#`` comments (whole lines and trailing), blank lines, CR/CRLF line ends,
per-face colours in any OFF and data after the last face (a note). Colours are integers 0..255
when any value of the vertex (or face) block is above 1, else floats 0..1; a missing alpha is 1,
a face without a colour among coloured ones is white. Vertex records must hold exactly the values
the keyword says (a plain ``OFF`` vertex with 4 values is malformed). Refused: ``4OFF``/``nOFF``
(other than 3-D vertices) and binary OFF.

The header's counts are never used to allocate: they are compared with the records the file
holds before anything is parsed, so a header claiming 353,535,235,358 vertices in a 300-byte
file is refused at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cma_builder.source.fileinfo import FileDefect, FileInfo
from cma_builder.source.objfile import Problem, error, note, numbers

_KEYWORD = re.compile(rb"((?:ST|[CN4n])*)OFF(\d*)")  # [ST][C][N][4][n]OFF, counts may follow at once
_INT = re.compile(rb"[+-]?\d+")


class OffError(FileDefect):
    """A defect that makes an OFF file unusable: ``code`` (``off_*``) and a one-line ``detail``."""


@dataclass
class OffMesh:
    """An OFF file's polygons as it holds them (see :meth:`triangles` for what is rendered)."""

    vertices: np.ndarray  # (N, 3) float64
    face_sizes: np.ndarray  # (F,) int64, corners of each face (>= 3)
    face_indices: np.ndarray  # (face_sizes.sum(),) int64: the corners of all faces, in file order
    vertex_colors: np.ndarray | None = None  # (N, 4) float32 RGBA in [0, 1]
    face_colors: np.ndarray | None = None  # (F, 4) float32 RGBA in [0, 1]
    notes: list[Problem] = field(default_factory=list)  # harmless quirks of the file

    @property
    def n_triangles(self) -> int:
        """Rows of :meth:`triangles`, without building it."""
        return int((self.face_sizes - 2).sum())

    def triangles(self) -> np.ndarray:
        """(T, 3) int64: every face fan-triangulated, (i0, i1, i2), (i0, i2, i3), ..., in file order.

        This exact triangulation is what is rendered and what validation checks, so both see the
        same surface (an n-gon's fan differs from other triangulations when it is not planar).
        """
        per_face = self.face_sizes - 2
        face = np.repeat(np.arange(len(per_face)), per_face)
        first = (np.cumsum(self.face_sizes) - self.face_sizes)[face]
        j = np.arange(len(face)) - (np.cumsum(per_face) - per_face)[face] + 1  # fan step in its face
        idx = self.face_indices
        return np.stack([idx[first], idx[first + j], idx[first + j + 1]], axis=1).astype(np.int64, copy=False)


def _short(text: bytes, n: int = 40) -> str:
    s = text.decode("utf-8", "replace").strip()
    return s if len(s) <= n else s[: n - 3] + "..."


def _records(data: bytes) -> list[bytes]:
    """The file's lines with comments cut and whitespace stripped, blank ones dropped."""
    lines = data.splitlines()
    if b"#" in data:
        lines = [line.split(b"#", 1)[0] for line in lines]
    return [s for s in map(bytes.strip, lines) if s]


def _line_number(data: bytes, k: int) -> int:
    """1-based line number of record ``k`` of :func:`_records` (for error details only)."""
    seen = -1
    for number, line in enumerate(data.splitlines(), 1):
        seen += bool(line.split(b"#", 1)[0].strip())
        if seen == k:
            return number
    return number


def _header(records: list[bytes]) -> tuple[bytes, int, int, int, list[Problem]]:
    """(keyword prefix, nv, nf, records the header takes, notes)."""
    tokens = records[0].split()
    match = _KEYWORD.fullmatch(tokens[0])
    if not match:
        raise OffError("off_bad_header", f"the file does not begin with an OFF keyword: '{_short(records[0])}'")
    prefix, fused = match.groups()
    if b"4" in prefix or b"n" in prefix:
        raise OffError("off_unsupported", f"{prefix.decode()}OFF (vertices of other than 3 dimensions) "
                                          f"is not supported")
    if tokens[1:2] == [b"BINARY"]:
        raise OffError("off_unsupported", "binary OFF is not supported")
    notes = [note("off_header_fused", f"keyword and counts run together: '{_short(records[0])}'")] if fused else []
    counts, used = ([fused] if fused else []) + tokens[1:], 1
    if not counts:
        if len(records) < 2:
            raise OffError("off_bad_counts", "no vertex and face counts after the header")
        counts, used = records[1].split(), 2
    shown = _short(b" ".join(counts))
    if len(counts) not in (2, 3) or not all(_INT.fullmatch(c) for c in counts[:2]):
        raise OffError("off_bad_counts", f"counts '{shown}' are not 'nv nf [ne]' integers")
    nv, nf = int(counts[0]), int(counts[1])
    if nv < 0 or nf < 0:
        raise OffError("off_bad_counts", f"negative count in '{shown}'")
    return prefix, nv, nf, used, notes


def _table(lines: list[bytes], what: str, data: bytes, first: int) -> tuple[np.ndarray, np.ndarray]:
    """(all numbers of ``lines`` in order, how many each line holds). Faces are tried as int64
    first (8x faster to parse than floats). ``first``: record index of ``lines[0]``, for the line
    number of a malformed record."""
    blob = b"\n".join(lines)
    buf = np.frombuffer(blob, np.uint8)
    space = buf <= 32
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))  # first byte of each token
    ends = np.append(np.flatnonzero(buf == 10), len(buf))  # end of each line
    counts = np.diff(np.searchsorted(starts, ends), prepend=0)
    for dtype in (np.int64, np.float64) if what == "face" else (np.float64,):
        flat = numbers(blob, dtype)
        if flat is not None and flat.size == starts.size:
            return flat, counts
    values = []
    for k, line in enumerate(lines):  # slow path: numbers numpy refuses, or name the bad one
        for token in line.split():
            try:
                values.append(float(token))
            except ValueError:
                raise OffError("off_malformed", f"{what} {k} (line {_line_number(data, first + k)}): "
                                                f"'{_short(token)}' is not a number") from None
    return np.array(values, dtype=np.float64), counts


def _non_integer(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "i":
        return np.zeros(values.shape, bool)
    return ~np.isfinite(values) | (values != np.floor(values))


def _rgba(values: np.ndarray) -> np.ndarray:
    """(n, 4) float32 RGBA in [0, 1] from (n, 3 or 4) values, NaN where absent (alpha 1, white).
    Integers 0..255 when any value is above 1, else floats 0..1."""
    scale = 255.0 if (values > 1).any() else 1.0
    rgba = np.ones((len(values), 4), np.float32)
    rgba[:, : values.shape[1]] = values / scale
    return np.clip(np.nan_to_num(rgba, nan=1.0), 0.0, 1.0)


def _vertices(lines: list[bytes], prefix: bytes, data: bytes, first: int) -> tuple[np.ndarray, np.ndarray | None]:
    flat, counts = _table(lines, "vertex", data, first)
    base = 3 + 3 * (b"N" in prefix)  # position and normal come before the colour
    st = 2 * (b"ST" in prefix)  # texture coordinates after it
    allowed = [base + 3 + st, base + 4 + st] if b"C" in prefix else [base + st]
    bad = np.flatnonzero((counts != counts[0]) | ~np.isin(counts, allowed))
    if bad.size:
        k = int(bad[0])
        widths = " or ".join(map(str, allowed))
        raise OffError("off_malformed", f"vertex {k} (line {_line_number(data, first + k)}) has {counts[k]} values; "
                                        f"{prefix.decode()}OFF vertices have {widths}")
    table = flat.reshape(len(lines), int(counts[0]))
    vertices = table[:, :3]
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        k = int(np.argmin(finite))
        raise OffError("off_nonfinite", f"{int((~finite).sum())} vertices with NaN or infinite coordinates, "
                                        f"the first is vertex {k}")
    colors = _rgba(table[:, base: table.shape[1] - st]) if b"C" in prefix else None
    return np.ascontiguousarray(vertices), colors


def _faces(lines: list[bytes], nv: int, data: bytes, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    flat, counts = _table(lines, "face", data, first)
    starts = np.cumsum(counts) - counts
    sizes_read = flat[starts]
    not_int = _non_integer(sizes_read)
    if not_int.any():
        k = int(np.argmax(not_int))
        raise OffError("off_malformed", f"face {k} (line {_line_number(data, first + k)}) begins with "
                                        f"{sizes_read[k]:g}, not a corner count")
    sizes = sizes_read.astype(np.int64)
    if (sizes < 3).any():
        k = int(np.argmax(sizes < 3))
        raise OffError("off_degenerate_face", f"face {k} (line {_line_number(data, first + k)}) has {sizes[k]} "
                                              f"corners, fewer than 3")
    extra = counts - 1 - sizes  # colour values after the corners
    bad = (extra != 0) & (extra != 3) & (extra != 4)
    if bad.any():
        k = int(np.argmax(bad))
        where = f"face {k} (line {_line_number(data, first + k)})"
        if extra[k] < 0:
            raise OffError("off_malformed", f"{where} lists {sizes[k]} corners but holds {counts[k] - 1} indices")
        raise OffError("off_malformed", f"{where} has {extra[k]} values after its corners; a colour has 3 or 4")
    face = np.repeat(np.arange(len(lines)), counts)
    slot = np.arange(flat.size) - starts[face]
    corner = (slot >= 1) & (slot <= sizes[face])
    indices_read = flat[corner]
    bad_index = _non_integer(indices_read) | (indices_read < 0) | (indices_read >= nv)
    if bad_index.any():
        j = int(np.argmax(bad_index))
        k = int(face[corner][j])
        raise OffError("off_bad_index", f"face {k} (line {_line_number(data, first + k)}) uses vertex "
                                        f"{indices_read[j]:g}; the file has {nv} vertices (0-based)")
    colors = None
    if extra.any():
        values = np.full((len(lines), 4), np.nan)
        for c in range(4):
            has = extra > c
            values[has, c] = flat[(starts + 1 + sizes)[has] + c]
        colors = _rgba(values)
    return sizes, indices_read.astype(np.int64), colors


def read_off(data: bytes) -> OffMesh:
    """Parse an OFF file's bytes; raise :class:`OffError` on any defect that makes it unusable."""
    records = _records(data)
    if not records:
        raise OffError("off_empty", "the file is empty" if not data.strip() else "the file holds only comments")
    prefix, nv, nf, used, notes = _header(records)
    held = len(records) - used
    if nv > held:
        raise OffError("off_truncated", f"header claims {nv} vertices, the file holds {held} lines after it")
    if nf > held - nv:
        raise OffError("off_truncated", f"header claims {nf} faces, the file holds {held - nv} lines after "
                                        f"its {nv} vertices")
    if nf == 0:
        raise OffError("off_no_faces", f"header declares {nv} vertices and no faces (a point set)")
    if nv == 0:
        vertices, vertex_colors = np.zeros((0, 3)), None
    else:
        vertices, vertex_colors = _vertices(records[used: used + nv], prefix, data, used)
    sizes, indices, face_colors = _faces(records[used + nv: used + nv + nf], nv, data, used + nv)
    trailing = held - nv - nf
    if trailing:
        notes.append(note("off_trailing_data", f"{trailing} lines after the last face are ignored"))
    return OffMesh(vertices, sizes, indices, vertex_colors, face_colors, notes)


def read_off_file(path: str | Path) -> OffMesh:
    """:func:`read_off` of a file (OSError when it cannot be read)."""
    return read_off(Path(path).read_bytes())


def inspect_off(path: str | Path) -> FileInfo:
    """Counts and defects of an OFF file; never raises. An error leaves the counts at 0."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileInfo(problems=[error("file_unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")])
    try:
        mesh = read_off(data)
    except OffError as exc:
        return FileInfo(problems=[error(exc.code, exc.detail)])
    return FileInfo(n_meshes=1, n_vertices=len(mesh.vertices), n_triangles=mesh.n_triangles,
                    vertex_colors=mesh.vertex_colors is not None or mesh.face_colors is not None,
                    problems=list(mesh.notes))
