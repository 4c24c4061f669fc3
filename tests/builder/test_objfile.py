import numpy as np
import pytest

from cma_builder.source.objfile import image_kind, inspect_obj, parse_mtl

TRI = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nvt 0 0\nvt 1 0\nvn 0 0 1\n"


def codes(data: bytes) -> list[str]:
    return [p.code for p in inspect_obj(data).problems]


def test_counts_of_a_valid_obj_with_mixed_corner_layouts_and_lines():
    data = (b"# 4 vertex positions\nmtllib m.mtl\n" + TRI + b"usemtl a\nf 1/1/1 2/2/1 3/1/1\n"
            b"usemtl b\nf  1//1 3//1 4//1\nf 2 3 4\nf -1 -2 -3\nf 1/2 2/1 4/2\nl 1 2\n")
    info = inspect_obj(data)
    assert info.problems == []
    assert (info.n_vertices, info.n_uvs, info.n_normals, info.n_faces) == (4, 2, 1, 5)
    assert info.mtllibs == ["m.mtl"] and info.materials_used == ["a", "b"]


@pytest.mark.parametrize("data, code", [
    (TRI + b"f 1 2 3\nf 1 2", "obj_truncated"),  # cut inside the last face
    (TRI + b"f 1/1/1 2/2/1 3/", "obj_truncated"),
    (b"v 0 0 0\nv 1 0", "obj_truncated"),
    (b"", "obj_empty"),
    (b"# only a comment\n", "obj_empty"),
    (TRI, "obj_empty"),  # vertices, no faces
    (TRI + b"f 1 2 5\n", "obj_bad_index"),
    (TRI + b"f 1/3 2/1 3/1\n", "obj_bad_index"),  # UV index out of range
    (TRI + b"f 0 1 2\n", "obj_bad_index"),
    (TRI + b"f -5 1 2\n", "obj_bad_index"),
    (b"v 0 0 nan\nv 1 0 0\nv 0 1 inf\nf 1 2 3\n", "obj_nonfinite"),
    (b"v 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "obj_malformed"),
    (TRI + b"f 1 2 x\nf 1 2 3\n", "obj_malformed"),
    (b"\x00\x01binary", "obj_unreadable"),
])
def test_defects_are_reported_not_raised(data, code):
    assert code in codes(data)


def test_truncation_at_a_line_boundary_is_caught_by_declared_counts():
    full = b"# 4 vertex positions\n" + TRI + b"# Mesh 'm' with 3 faces\nf 1 2 3\nf 1 2 4\nl 1 2\n"
    assert codes(full) == []
    cut = full[: full.index(b"f 1 2 4")]
    assert "obj_truncated" in codes(cut)
    assert "obj_truncated" in codes(full.rstrip(b"\n"))  # declared-count writers end with a newline


def test_matches_numpy_reference_on_a_random_mesh():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3))
    f = rng.integers(1, 201, size=(500, 3))
    data = "".join(f"v {a:.6f} {b:.6f} {c:.6f}\n" for a, b, c in v) + "".join(f"f {a} {b} {c}\n" for a, b, c in f)
    info = inspect_obj(data.encode())
    assert (info.n_vertices, info.n_faces, info.problems) == (200, 500, [])
    bad = data + "f 1 2 201\n"
    assert codes(bad.encode()) == ["obj_bad_index"]


def test_parse_mtl_materials_transparency_and_texture_options():
    mtl = parse_mtl("""
newmtl a
Kd 1 1 1
d 1
map_Kd -s 1 1 1 -o 0.5 ../images/texture0.jpg
newmtl b
d 0.00999999
map_d ../images/alpha.png
newmtl c
Tr 0.5
bump -bm 0.3 ../images/bump map.png
""")
    assert mtl.materials == ["a", "b", "c"]
    assert mtl.transparent == ["b", "c"]
    assert mtl.textures == [("map_Kd", "../images/texture0.jpg"), ("map_d", "../images/alpha.png"),
                            ("bump", "../images/bump map.png")]


def test_image_kind_sniffs_content_not_extension(tmp_path):
    png_as_jpg = tmp_path / "t.jpg"
    png_as_jpg.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert image_kind(png_as_jpg) == ("png", False)
    jpg = tmp_path / "t2.jpg"
    jpg.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    assert image_kind(jpg) == ("jpeg", True)
    tga = tmp_path / "t.tga"
    tga.write_bytes(b"\x00" * 20)
    assert image_kind(tga) == (None, True)
