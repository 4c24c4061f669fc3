import time
import tracemalloc

import numpy as np
import pytest

from cma_builder.source.offfile import OffError, inspect_off, read_off, read_off_file

CUBE_V = [[-0.5, -0.5, 0.5], [0.5, -0.5, 0.5], [-0.5, 0.5, 0.5], [0.5, 0.5, 0.5],
          [-0.5, 0.5, -0.5], [0.5, 0.5, -0.5], [-0.5, -0.5, -0.5], [0.5, -0.5, -0.5]]
CUBE_F = [[0, 1, 3, 2], [2, 3, 5, 4], [4, 5, 7, 6], [6, 7, 1, 0], [1, 7, 5, 3], [6, 0, 2, 4]]
# comments.off and whitespace.off: an octahedron-like cube with RGBA float face colours
COMMENTS_V = [[1.632993, 0, 1.154701], [0, 1.632993, 1.154701], [-1.632993, 0, 1.154701], [0, -1.632993, 1.154701],
              [1.632993, 0, -1.154701], [0, 1.632993, -1.154701], [-1.632993, 0, -1.154701], [0, -1.632993, -1.154701]]
COMMENTS_F = [[0, 1, 2, 3], [7, 4, 0, 3], [4, 5, 1, 0], [5, 6, 2, 1], [3, 2, 6, 7], [6, 5, 4, 7]]
COMMENTS_RGBA = [[1, 0, 0, .75], [.3, .4, 0, .75], [.2, .5, .1, .75], [.1, .6, .2, .75], [0, .7, .3, .75],
                 [0, 1, 0, .75]]
TRI = b"OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 2 3\n"


def off_text(vertices, faces, keyword="OFF") -> bytes:
    lines = [keyword, f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(map(str, v)) for v in vertices]
    lines += [" ".join(map(str, [len(f), *f])) for f in faces]
    return ("\n".join(lines) + "\n").encode()


def faces_of(mesh) -> list[list[int]]:
    ends = np.cumsum(mesh.face_sizes)
    return [mesh.face_indices[e - n: e].tolist() for n, e in zip(mesh.face_sizes, ends)]


def fan(faces) -> list[list[int]]:
    return [[f[0], f[j], f[j + 1]] for f in faces for j in range(1, len(f) - 1)]


def code_of(data: bytes) -> OffError:
    with pytest.raises(OffError) as info:
        read_off(data)
    return info.value


# --- real files -----------------------------------------------------------------------------------

def test_assimp_cube_exact_arrays(real_assets):
    mesh = read_off_file(real_assets / "mesh" / "assimp-Cube.off")
    np.testing.assert_array_equal(mesh.vertices, CUBE_V)
    assert faces_of(mesh) == CUBE_F
    np.testing.assert_array_equal(mesh.triangles(), fan(CUBE_F))
    assert mesh.vertex_colors is None and mesh.face_colors is None and mesh.notes == []


@pytest.mark.parametrize("name, notes", [("comments.off", []), ("whitespace.off", ["off_header_fused"])])
def test_comment_lines_trailing_comments_leading_whitespace_and_fused_header(real_assets, name, notes):
    mesh = read_off_file(real_assets / "mesh" / name)
    np.testing.assert_array_equal(mesh.vertices, COMMENTS_V)
    assert faces_of(mesh) == COMMENTS_F
    np.testing.assert_allclose(mesh.face_colors, COMMENTS_RGBA, atol=1e-7)
    assert mesh.vertex_colors is None
    assert [n.code for n in mesh.notes] == notes
    info = inspect_off(real_assets / "mesh" / name)
    assert (info.n_meshes, info.n_vertices, info.n_triangles, info.vertex_colors) == (1, 8, 12, True)


@pytest.mark.parametrize("name", ["ballA.off", "ballB.off", "assimp-Wuson.off"])
def test_triangle_files_match_trimesh(real_assets, name):
    trimesh = pytest.importorskip("trimesh")
    path = real_assets / "mesh" / name
    ref = trimesh.load(path, process=False)
    mesh = read_off_file(path)
    np.testing.assert_allclose(mesh.vertices, ref.vertices)
    np.testing.assert_array_equal(mesh.triangles(), ref.faces)  # triangle files: the fan is the face
    info = inspect_off(path)
    assert (info.n_vertices, info.n_triangles, info.problems) == (len(ref.vertices), len(ref.faces), [])


def test_faulty_real_files(real_assets):
    faulty = real_assets / "faulty"
    assert [p.code for p in inspect_off(faulty / "assimp-empty.off").problems] == ["off_empty"]
    invalid = inspect_off(faulty / "assimp-invalid.off")  # "3 4" counts, then a face of 0 corners
    assert [p.code for p in invalid.problems] == ["off_degenerate_face"] and "0 corners" in invalid.problems[0].detail
    assert invalid.n_meshes == invalid.n_vertices == 0


def test_353_billion_vertex_header_is_refused_without_allocating(real_assets):
    path = real_assets / "faulty" / "assimp-OutOfMemory.off"
    tracemalloc.start()
    start = time.perf_counter()
    try:
        info = inspect_off(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < 10 * 2**20
    (problem,) = info.problems
    assert (problem.severity, problem.code) == ("error", "off_truncated")
    assert "353535235358 vertices" in problem.detail


def test_huge_header_claims_are_refused_without_allocating():
    data = b"OFF\n1000000000000 6 0\n" + TRI[10:]
    face_claim = b"OFF\n4 999999999999 0\n" + TRI[10:]
    tracemalloc.start()
    try:
        errors = [code_of(data), code_of(face_claim)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    assert [e.code for e in errors] == ["off_truncated", "off_truncated"]
    assert "1000000000000 vertices, the file holds 6 lines" in errors[0].detail
    assert "999999999999 faces" in errors[1].detail


# --- accepted variants --------------------------------------------------------------------------

def test_counts_on_the_header_line_crlf_cr_blank_lines_and_comments():
    expected = read_off(TRI)
    variants = [
        b"OFF 4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 2 3\n",
        TRI.replace(b"\n", b"\r\n"),
        TRI.replace(b"\n", b"\r"),
        b"# made by hand\n\n  OFF  # keyword\n\n4 2   # no edge count follows\n\t0 0 0\n1 0 0 # x\n0 1 0\n"
        b"#\n0 0 1\n\n3 0 1 2\n3 0 2 3",
        b"OFF4 2 0\r\n0 0 0\r\n1 0 0\r\n0 1 0\r\n0 0 1\r\n3 0 1 2\r\n3 0 2 3\r\n",  # ModelNet40's header defect
    ]
    for data in variants:
        mesh = read_off(data)
        np.testing.assert_array_equal(mesh.vertices, expected.vertices)
        np.testing.assert_array_equal(mesh.triangles(), [[0, 1, 2], [0, 2, 3]])
    assert [n.code for n in read_off(variants[-1]).notes] == ["off_header_fused"]
    assert read_off(variants[0]).notes == []


def test_ngons_are_fan_triangulated_in_file_order():
    faces = [[0, 1, 2, 3, 4], [4, 3, 5], [5, 0, 1, 6, 2, 3]]
    mesh = read_off(off_text(np.arange(21).reshape(7, 3), faces))
    assert mesh.face_sizes.tolist() == [5, 3, 6] and mesh.n_triangles == 3 + 1 + 4
    assert mesh.triangles().tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 5],
                                         [5, 0, 1], [5, 1, 6], [5, 6, 2], [5, 2, 3]]
    assert mesh.triangles().dtype == np.int64


def test_coff_vertex_colours_integers_and_floats(tmp_path):
    ints = b"COFF\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 0 128 0 64\n0 1 0 0 0 255 0\n3 0 1 2\n"
    mesh = read_off(ints)
    np.testing.assert_allclose(mesh.vertex_colors, [[1, 0, 0, 1], [0, 128 / 255, 0, 64 / 255], [0, 0, 1, 0]])
    assert mesh.vertex_colors.dtype == np.float32
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    floats = b"COFF\n3 1 0\n0 0 0 1 0 0\n1 0 0 0 0.5 0\n0 1 0 0 0 1.0\n3 0 1 2\n"  # RGB: alpha 1
    np.testing.assert_allclose(read_off(floats).vertex_colors, [[1, 0, 0, 1], [0, .5, 0, 1], [0, 0, 1, 1]])
    rgb_ints = b"COFF\n3 1 0\n0 0 0 0 0 0\n1 0 0 0 1 0\n0 1 0 2 0 0\n3 0 1 2\n"  # a 2 anywhere: 0..255 ints
    np.testing.assert_allclose(read_off(rgb_ints).vertex_colors[:, 0], [0, 0, 2 / 255])
    (tmp_path / "c.off").write_bytes(ints)
    assert inspect_off(tmp_path / "c.off").vertex_colors


def test_face_colours_ints_floats_and_uncoloured_faces():
    data = off_text([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
    ints = data.replace(b"3 0 1 2\n", b"3 0 1 2 255 0 0\n").replace(b"3 1 3 2\n", b"3 1 3 2 0 51 0 102\n")
    np.testing.assert_allclose(read_off(ints).face_colors, [[1, 0, 0, 1], [0, .2, 0, .4]])
    floats = data.replace(b"3 0 1 2\n", b"3 0 1 2 0.5 0.25 0 1\n")
    np.testing.assert_allclose(read_off(floats).face_colors, [[.5, .25, 0, 1], [1, 1, 1, 1]])
    assert read_off(data).face_colors is None


def test_noff_normals_and_stoff_texture_coordinates_are_dropped():
    noff = b"NOFF\n3 1 0\n0 0 0 0 0 1\n1 0 0 0 0 1\n0 1 0 0 0 1\n3 0 1 2\n"
    np.testing.assert_array_equal(read_off(noff).vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    cnoff = b"CNOFF\n3 1 0\n0 0 0 0 0 1 9 9 9\n1 0 0 0 0 1 0 0 0\n0 1 0 0 0 1 0 0 255\n3 0 1 2\n"
    mesh = read_off(cnoff)
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(mesh.vertex_colors[:, :3], [[9 / 255] * 3, [0, 0, 0], [0, 0, 1]])
    stcoff = b"STCOFF\n3 1\n0 0 0 1 1 1 1 0.5 0.5\n1 0 0 1 1 1 1 0 0\n0 1 0 1 1 1 1 1 1\n3 0 1 2\n"
    mesh = read_off(stcoff)
    np.testing.assert_array_equal(mesh.vertices[:, 0], [0, 1, 0])
    np.testing.assert_array_equal(mesh.vertex_colors, np.ones((3, 4)))


def test_trailing_data_is_a_note():
    mesh = read_off(TRI + b"3 1 2 3\n")
    assert [(n.severity, n.code) for n in mesh.notes] == [("note", "off_trailing_data")]
    assert "1 lines" in mesh.notes[0].detail and len(mesh.face_sizes) == 2


def test_random_mesh_of_mixed_polygons_and_colours_round_trips():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(500, 3)).round(6)
    faces = [rng.choice(500, size=rng.integers(3, 8), replace=False).tolist() for _ in range(2000)]
    colours = rng.integers(0, 256, size=(2000, 4))
    lines = ["OFF", "500 2000 0"] + [" ".join(f"{x:.6f}" for x in v) for v in vertices]
    lines += [" ".join(map(str, [len(f), *f, *c])) for f, c in zip(faces, colours)]
    mesh = read_off("\n".join(lines).encode())
    np.testing.assert_array_equal(mesh.vertices, vertices)
    assert faces_of(mesh) == faces
    np.testing.assert_array_equal(mesh.triangles(), fan(faces))
    np.testing.assert_allclose(mesh.face_colors, colours / 255, rtol=1e-6)


# --- defects --------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, code, word", [
    (b"", "off_empty", "empty"),
    (b"  \n\r\n", "off_empty", "empty"),
    (b"# OFF\n# 3 1 0\n", "off_empty", "comments"),
    (b"ply\nformat ascii 1.0\n", "off_bad_header", "ply"),
    (b"OFFSET 3 1 0\n", "off_bad_header", "OFFSET"),
    (b"\x00\x01\x02OFF", "off_bad_header", "OFF keyword"),
    (b"4OFF\n3 1 0\n", "off_unsupported", "dimensions"),
    (b"nOFF\n4\n3 1 0\n", "off_unsupported", "dimensions"),
    (b"OFF BINARY\n", "off_unsupported", "binary"),
    (b"OFF\n", "off_bad_counts", "no vertex"),
    (b"OFF\n3\n0 0 0\n", "off_bad_counts", "'3'"),
    (b"OFF\n3.0 1 0\n", "off_bad_counts", "3.0"),
    (b"OFF\nthree 1 0\n", "off_bad_counts", "three"),
    (b"OFF\n3 1 0 0 0\n", "off_bad_counts", "integers"),
    (b"OFF\n-3 1 0\n", "off_bad_counts", "negative"),
    (TRI[: TRI.index(b"0 0 1\n")], "off_truncated", "4 vertices"),  # cut in the vertex block
    (TRI[: TRI.index(b"3 0 2 3")], "off_truncated", "2 faces"),  # cut between faces
    (b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "off_no_faces", "no faces"),
    (b"OFF\n0 0 0\n", "off_no_faces", "no faces"),
    (TRI.replace(b"1 0 0", b"1 0 x"), "off_malformed", "'x'"),
    (TRI.replace(b"1 0 0", b"1 0"), "off_malformed", "2 values"),
    (TRI.replace(b"1 0 0", b"1 0 0 1"), "off_malformed", "4 values"),
    (b"COFF\n3 1 0\n0 0 0 1 0 0 1\n1 0 0\n0 1 0 0 0 1 1\n3 0 1 2\n", "off_malformed", "vertex 1"),
    (TRI.replace(b"3 0 2 3", b"3 0 2"), "off_malformed", "lists 3 corners"),
    (TRI.replace(b"3 0 2 3", b"3 0 2 3 1 1"), "off_malformed", "colour"),
    (TRI.replace(b"3 0 2 3", b"3.5 0 2 3"), "off_malformed", "corner count"),
    (TRI.replace(b"3 0 2 3", b"3 0 2 z"), "off_malformed", "'z'"),
    (TRI.replace(b"3 0 2 3", b"3 0 2 4"), "off_bad_index", "vertex 4"),
    (TRI.replace(b"3 0 2 3", b"3 0 -1 3"), "off_bad_index", "vertex -1"),
    (TRI.replace(b"3 0 2 3", b"3 0 1.5 3"), "off_bad_index", "1.5"),
    (TRI.replace(b"3 0 2 3", b"2 0 2"), "off_degenerate_face", "2 corners"),
    (TRI.replace(b"3 0 2 3", b"0"), "off_degenerate_face", "face 1"),
    (TRI.replace(b"1 0 0", b"1 nan 0").replace(b"0 0 1\n", b"0 inf 1\n"), "off_nonfinite", "2 vertices"),
])
def test_defects_raise_an_off_error_with_a_code_and_a_detail(data, code, word):
    err = code_of(data)
    assert err.code == code and word in err.detail, err
    assert "\n" not in err.detail and str(err) == f"{code}: {err.detail}"


def test_details_name_the_line_of_a_malformed_record():
    data = b"OFF\n# comment\n4 2 0\n0 0 0\n\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 2 x\n"
    assert "face 1 (line 10)" in code_of(data).detail


def test_inspect_off_reports_counts_notes_and_errors(tmp_path):
    good = tmp_path / "good.off"
    good.write_bytes(b"OFF5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n4 0 1 2 3\n3 0 1 4\n")
    info = inspect_off(good)
    assert (info.n_meshes, info.n_vertices, info.n_triangles, info.vertex_colors) == (1, 5, 3, False)
    assert [(p.severity, p.code) for p in info.problems] == [("note", "off_header_fused")]
    bad = tmp_path / "bad.off"
    bad.write_bytes(TRI.replace(b"3 0 2 3", b"3 0 2 9"))
    info = inspect_off(bad)
    assert [(p.severity, p.code) for p in info.problems] == [("error", "off_bad_index")]
    assert (info.n_meshes, info.n_vertices, info.n_triangles) == (0, 0, 0)
    for unreadable in (tmp_path / "missing.off", tmp_path):
        (problem,) = inspect_off(unreadable).problems
        assert (problem.severity, problem.code) == ("error", "file_unreadable")
