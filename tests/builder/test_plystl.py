import time
import tracemalloc

import numpy as np
import pytest

from cma_builder.source import plystl
from cma_builder.source.plystl import inspect_ply, inspect_stl

XYZ = ["float x", "float y", "float z"]
FACE = ["list uchar int vertex_indices"]
PLY_TYPE = {"u1": "uchar", "i1": "char", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint"}
QUAD_FAN = [[0, 1, 2, 3], [0, 1, 4], [1, 2, 4], [2, 3, 4, 0, 1]]  # 2 + 1 + 1 + 3 triangles
PYRAMID = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]]


def header(fmt: str, elements, comments=(), eol="\n") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", *comments]
    for name, count, props in elements:
        lines += [f"element {name} {count}", *(f"property {p}" for p in props)]
    return (eol.join([*lines, "end_header"]) + eol).encode()


def ascii_ply(vertices, faces, comments=(), vertex_props=XYZ, face_props=FACE) -> bytes:
    body = "".join(" ".join(map(str, v)) + "\n" for v in vertices)
    body += "".join(" ".join(map(str, [len(f), *f])) + "\n" for f in faces)
    elements = [("vertex", len(vertices), vertex_props), ("face", len(faces), face_props)]
    return header("ascii", elements, comments) + body.encode()


def binary_ply(vertices, faces, order="<", count="u1", index="i4", before=b"", after=b"", elements=None) -> bytes:
    """Vertices as float x y z; ``before``/``after``: bodies of extra elements (declared in ``elements``)."""
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[order]
    face = [f"list {PLY_TYPE[count]} {PLY_TYPE[index]} vertex_indices"]
    declared = elements or [("vertex", len(vertices), XYZ), ("face", len(faces), face)]
    body = np.asarray(vertices, order + "f4").tobytes() + before
    body += b"".join(np.array([len(f)], order + count).tobytes() + np.array(f, order + index).tobytes() for f in faces)
    return header(fmt, declared) + body + after


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def codes(info) -> list[tuple[str, str]]:
    return [(p.severity, p.code) for p in info.problems]


def trimesh_counts(path) -> tuple[int, int]:
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.load(path, process=False, force="mesh")
    return len(mesh.vertices), len(mesh.faces)


# --- PLY ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bunny.ply", "suzanne.ply"])
def test_real_ply_counts_match_trimesh(real_assets, name):
    path = real_assets / "mesh" / name
    info = inspect_ply(path)
    assert (info.n_meshes, info.problems, info.vertex_colors) == (1, [], False)
    assert (info.n_vertices, info.n_triangles) == trimesh_counts(path)


def test_real_ply_with_an_empty_header_is_a_clear_error(real_assets):
    info = inspect_ply(real_assets / "faulty" / "ply_empty_header.ply")
    (problem,) = info.problems
    assert (problem.severity, problem.code) == ("error", "ply_no_vertices") and "vertex" in problem.detail
    assert info.n_meshes == info.n_vertices == 0


@pytest.mark.parametrize("make", [
    lambda: ascii_ply(PYRAMID, QUAD_FAN),
    lambda: ascii_ply(PYRAMID, QUAD_FAN).replace(b"\n", b"\r\n"),
    lambda: binary_ply(PYRAMID, [[0, 1, 2, 3]] * 50),  # one size: one strided read
    lambda: binary_ply(PYRAMID, [[0, 1, 4], [1, 2, 4], [2, 3, 4]] * 40, ">", "i1", "i2"),
], ids=["ascii", "ascii-crlf", "binary-quads", "binary-triangles"])
def test_ply_triangle_counts_match_trimesh(tmp_path, make):
    path = write(tmp_path, "m.ply", make())
    info = inspect_ply(path)
    assert (info.n_meshes, info.problems) == (1, [])
    assert (info.n_vertices, info.n_triangles) == trimesh_counts(path)


@pytest.mark.parametrize("order, count, index", [("<", "u1", "i4"), (">", "u2", "u4"), ("<", "i1", "i2")])
def test_binary_ply_faces_of_mixed_sizes_are_walked(tmp_path, order, count, index):
    # trimesh reads binary PLY lists only when all have the first one's length: the reference is the list
    faces = QUAD_FAN * 30
    info = inspect_ply(write(tmp_path, "m.ply", binary_ply(PYRAMID, faces, order, count, index)))
    assert (info.n_vertices, info.n_triangles, info.problems) == (5, sum(len(f) - 2 for f in faces), [])


def test_binary_ply_faces_with_two_lists_of_mixed_sizes_are_walked(tmp_path):
    elements = [("vertex", 5, XYZ), ("face", len(QUAD_FAN), [*FACE, "list uchar float texcoord"])]
    faces = b"".join(bytes([len(f)]) + np.array(f, "<i4").tobytes() + bytes([2 * len(f)]) +
                     np.zeros(2 * len(f), "<f4").tobytes() for f in QUAD_FAN)
    data = header("binary_little_endian", elements) + np.asarray(PYRAMID, "<f4").tobytes() + faces
    info = inspect_ply(write(tmp_path, "uv.ply", data))
    assert (info.n_triangles, info.problems) == (7, [])
    assert codes(inspect_ply(write(tmp_path, "cut.ply", data[:-4]))) == [("error", "ply_truncated")]


def test_ply_elements_with_lists_before_the_faces_and_fixed_ones_after_are_walked(tmp_path):
    groups = [[0, 1], [2, 3, 4]]
    before = b"".join(np.array([len(g)], "u1").tobytes() + np.array(g, "<i4").tobytes() for g in groups)
    after = np.array([[0, 1], [1, 2], [2, 3]], "<i4").tobytes()
    elements = [("vertex", 5, XYZ), ("group", 2, ["list uchar int members"]),
                ("face", len(QUAD_FAN), ["uchar flags", *FACE]), ("edge", 3, ["int vertex1", "int vertex2"])]
    faces = b"".join(np.array([7, len(f)], "u1").tobytes() + np.array(f, "<i4").tobytes() for f in QUAD_FAN)
    body = np.asarray(PYRAMID, "<f4").tobytes() + before + faces + after
    info = inspect_ply(write(tmp_path, "m.ply", header("binary_little_endian", elements) + body))
    assert (info.n_vertices, info.n_triangles, info.problems) == (5, 7, [])
    cut = inspect_ply(write(tmp_path, "cut.ply", header("binary_little_endian", elements) + body[:-5]))
    assert codes(cut) == [("error", "ply_truncated")]


def test_ply_vertex_colours_comments_obj_info_and_textures(tmp_path):
    coloured = ascii_ply([[*v, 255, 0, 0] for v in PYRAMID], QUAD_FAN,
                         comments=["comment made by hand", "obj_info scanner 1", "comment TextureFile skin.png",
                                   "comment TextureFile gone.jpg"],
                         vertex_props=[*XYZ, "uchar red", "uchar green", "uchar blue"])
    (tmp_path / "skin.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    info = inspect_ply(write(tmp_path, "c.ply", coloured))
    assert info.vertex_colors and info.textures == ["skin.png", "gone.jpg"] and info.textures_missing == ["gone.jpg"]
    assert codes(info) == [("warn", "texture_missing")] and "gone.jpg" in info.problems[0].detail
    assert (info.n_meshes, info.n_triangles) == (1, 7)
    diffuse = [("vertex", 5, [*XYZ, "uchar diffuse_red", "uchar diffuse_green", "uchar diffuse_blue"]),
               ("face", 1, FACE)]
    body = np.zeros(5, [("p", "<f4", 3), ("c", "u1", 3)]).tobytes() + bytes([3]) + np.array([0, 1, 2], "<i4").tobytes()
    assert inspect_ply(write(tmp_path, "d.ply", header("binary_little_endian", diffuse) + body)).vertex_colors
    assert not inspect_ply(write(tmp_path, "p.ply", ascii_ply(PYRAMID, QUAD_FAN))).vertex_colors


def test_ply_trailing_data_is_a_note(tmp_path):
    info = inspect_ply(write(tmp_path, "b.ply", binary_ply(PYRAMID, QUAD_FAN) + b"\0\0\0"))
    assert codes(info) == [("note", "ply_trailing_data")] and "3 bytes" in info.problems[0].detail
    info = inspect_ply(write(tmp_path, "a.ply", ascii_ply(PYRAMID, QUAD_FAN) + b"1 2 3\n"))
    assert codes(info) == [("note", "ply_trailing_data")] and "1 lines" in info.problems[0].detail


def test_large_ply_files_are_not_read_and_their_triangles_are_estimated(tmp_path, monkeypatch):
    monkeypatch.setattr(plystl, "FULL_READ_MAX", 100)
    info = inspect_ply(write(tmp_path, "big.ply", binary_ply(PYRAMID, QUAD_FAN)))
    assert (info.n_vertices, info.n_triangles) == (5, len(QUAD_FAN))
    assert codes(info) == [("note", "ply_triangles_estimated")]
    data = binary_ply(PYRAMID, QUAD_FAN)
    short = data[: data.index(b"end_header\n") + 11 + 30]  # the size check still runs on the header's counts
    assert codes(inspect_ply(write(tmp_path, "cut.ply", short))) == [("error", "ply_truncated")]


def test_ascii_ply_with_a_list_before_the_indices_is_estimated(tmp_path):
    data = ascii_ply(PYRAMID, []).replace(b"element face 0", b"element face 1")
    data = data.replace(b"property list uchar int vertex_indices",
                        b"property list uchar float uv\nproperty list uchar int vertex_indices") + b"2 0 0 4 0 1 2 3\n"
    info = inspect_ply(write(tmp_path, "uv.ply", data))
    assert (info.n_triangles, codes(info)) == (1, [("note", "ply_triangles_estimated")])


def test_absurd_ply_counts_are_refused_without_allocating(tmp_path):
    data = binary_ply(PYRAMID, QUAD_FAN).replace(b"element vertex 5", b"element vertex 1000000000000")
    path = write(tmp_path, "huge.ply", data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        info = inspect_ply(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < 10 * 2**20
    assert codes(info) == [("error", "ply_truncated")] and "vertex 1000000000000" in info.problems[0].detail


TRI_ASCII = ascii_ply(PYRAMID[:3], [[0, 1, 2]])
TRI_BINARY = binary_ply(PYRAMID[:3], [[0, 1, 2]])
NEGATIVE_LIST = bytearray(binary_ply(PYRAMID, [[0, 1, 2]] * 2, count="i1"))
NEGATIVE_LIST[-13] = 0xFE  # the second face's (signed) length: -2
NEGATIVE_LIST = bytes(NEGATIVE_LIST)


@pytest.mark.parametrize("data, code, word", [
    (b"", "ply_empty", "empty"),
    (b"OFF\n3 1 0\n", "ply_not_ply", "ply"),
    (b"plywood\n", "ply_not_ply", "ply"),
    (TRI_ASCII.replace(b"end_header", b"end_headr"), "ply_no_end_header", "end_header"),
    (b"ply\nformat ascii 1.0\nelement vertex 3\n", "ply_no_end_header", "end_header"),
    (TRI_ASCII.replace(b"format ascii", b"format binary"), "ply_bad_format", "binary"),
    (TRI_ASCII.replace(b"format ascii 1.0\n", b""), "ply_bad_format", "no format"),
    (TRI_ASCII.replace(b"element vertex 3", b"element vertex three"), "ply_bad_header", "element"),
    (TRI_ASCII.replace(b"element vertex 3", b"element vertex -3"), "ply_bad_header", "element"),
    (TRI_ASCII.replace(b"float x", b"float128 x"), "ply_bad_header", "float128"),
    (TRI_ASCII.replace(b"list uchar int", b"list float int"), "ply_bad_header", "list"),
    (TRI_ASCII.replace(b"format ascii 1.0\n", b"format ascii 1.0\nproperty float w\n"), "ply_bad_header",
     "property"),
    (TRI_ASCII.replace(b"end_header", b"material 1\nend_header"), "ply_bad_header", "material"),
    (TRI_ASCII.replace(b"element vertex", b"element point"), "ply_no_vertices", "no vertex"),
    (ascii_ply([], [[0, 1, 2]]), "ply_no_vertices", "0 vertices"),
    (ascii_ply(PYRAMID, []), "ply_no_faces", "no faces"),
    (header("ascii", [("vertex", 1, XYZ)]) + b"0 0 0\n", "ply_no_faces", "point set"),
    (TRI_ASCII.replace(b"vertex_indices", b"corners"), "ply_no_faces", "vertex_indices"),
    (TRI_BINARY[:-20], "ply_truncated", "bytes after the header"),  # short of the vertex block
    (TRI_ASCII.replace(b"element face 1", b"element face 3"), "ply_truncated", "face 3; the body holds 4 lines"),
    (TRI_ASCII[:-4], "ply_truncated", "cut short"),  # inside the last face line
    (binary_ply(PYRAMID, [[0, 1, 2, 3, 4]] * 3)[:-4], "ply_truncated", "face"),  # a face's last index
    (TRI_ASCII.replace(b"3 0 1 2\n", b"x 0 1 2\n"), "ply_malformed", "corner count"),
    (NEGATIVE_LIST, "ply_malformed", "length -2"),
])
def test_ply_defects(tmp_path, data, code, word):
    info = inspect_ply(write(tmp_path, "bad.ply", data))
    assert codes(info) == [("error", code)] and word in info.problems[0].detail, info.problems
    assert (info.n_meshes, info.n_vertices, info.n_triangles) == (0, 0, 0)


# --- STL ------------------------------------------------------------------------------------------

TRIANGLES = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 1, 0], [0, 0, 1]]], np.float32)


def binary_stl(triangles, head: bytes = b"made by a test") -> bytes:
    records = np.zeros(len(triangles), [("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    records["v"] = triangles
    return head.ljust(80, b" ") + np.uint32(len(triangles)).tobytes() + records.tobytes()


def ascii_stl(triangles, name: str = "part") -> bytes:
    out = [f"solid {name}"]
    for tri in triangles:
        out += ["  facet normal 0 0 1", "    outer loop", *(f"      vertex {x:g} {y:g} {z:g}" for x, y, z in tri),
                "    endloop", "  endfacet"]
    return ("\n".join([*out, f"endsolid {name}"]) + "\n").encode()


@pytest.mark.parametrize("name", ["teapot.stl", "featuretype.STL"])
def test_real_stl_counts_match_trimesh(real_assets, name):
    path = real_assets / "mesh" / name
    info = inspect_stl(path)
    n_vertices, n_faces = trimesh_counts(path)  # process=False: 3 unmerged vertices per triangle
    assert (info.n_meshes, info.n_vertices, info.n_triangles, info.problems) == (1, n_vertices, n_faces, [])


@pytest.mark.parametrize("data", [
    binary_stl(TRIANGLES),
    ascii_stl(TRIANGLES),
    ascii_stl(TRIANGLES).upper(),
    ascii_stl(TRIANGLES).replace(b"\n", b"\r\n"),
], ids=["binary", "ascii", "ascii-upper", "ascii-crlf"])
def test_stl_counts_match_trimesh(tmp_path, data):
    path = write(tmp_path, "m.stl", data)
    info = inspect_stl(path)
    assert (info.n_meshes, info.n_vertices, info.n_triangles, info.problems) == (1, 6, 2, [])
    assert trimesh_counts(path) == (6, 2)


def test_binary_stl_whose_header_begins_with_solid_is_binary_with_a_note(tmp_path):
    info = inspect_stl(write(tmp_path, "s.stl", binary_stl(TRIANGLES, b"solid exported by a CAD tool")))
    assert (info.n_triangles, codes(info)) == (2, [("note", "stl_solid_header")])


def test_a_large_binary_stl_is_checked_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(plystl, "STL_CHUNK", 7)
    triangles = np.tile(TRIANGLES, (50, 1, 1))
    triangles[93, 2, 1] = np.nan
    info = inspect_stl(write(tmp_path, "n.stl", binary_stl(triangles)))
    assert codes(info) == [("error", "stl_nonfinite")] and "1 of 100" in info.problems[0].detail
    assert inspect_stl(write(tmp_path, "ok.stl", binary_stl(np.tile(TRIANGLES, (50, 1, 1))))).n_triangles == 100


NAN_TRIANGLES = TRIANGLES.copy()
NAN_TRIANGLES[1, 1, 0] = np.inf


@pytest.mark.parametrize("data, code, word", [
    (b"", "stl_empty", "empty"),
    (b"\x00" * 40, "stl_truncated", "84-byte"),
    (binary_stl(TRIANGLES)[:-10], "stl_truncated", "2 triangles"),
    (binary_stl(TRIANGLES, b"solid x")[:-10], "stl_truncated", "2 triangles"),
    (binary_stl(TRIANGLES) + b"\0" * 7, "stl_size_mismatch", "exact size"),
    (binary_stl(TRIANGLES[:0]), "stl_no_triangles", "0 triangles"),
    (b"solid empty\nendsolid empty\n", "stl_no_triangles", "no facet"),
    (ascii_stl(TRIANGLES)[:-60], "stl_truncated", "2 facets"),
    (ascii_stl(TRIANGLES).replace(b"vertex 0 0 1\n", b""), "stl_malformed", "5 vertex lines"),
    (ascii_stl(TRIANGLES).replace(b"vertex 0 0 1", b"vertex 0 zero 1"), "stl_malformed", "3 numbers"),
    (ascii_stl(TRIANGLES).replace(b"vertex 0 0 1", b"vertex 0 0"), "stl_malformed", "3 numbers"),
    (binary_stl(NAN_TRIANGLES), "stl_nonfinite", "1 of 2"),
    (ascii_stl(TRIANGLES).replace(b"vertex 0 0 1", b"vertex 0 nan 1"), "stl_nonfinite", "1 facets"),
])
def test_stl_defects(tmp_path, data, code, word):
    info = inspect_stl(write(tmp_path, "bad.stl", data))
    assert codes(info) == [("error", code)] and word in info.problems[0].detail, info.problems
    assert (info.n_meshes, info.n_vertices, info.n_triangles) == (0, 0, 0)


def test_unreadable_files(tmp_path):
    for inspect in (inspect_ply, inspect_stl):
        for path in (tmp_path / "missing", tmp_path):
            assert codes(inspect(path)) == [("error", "file_unreadable")]
