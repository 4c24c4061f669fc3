import copy
import json
import struct
import time
import warnings

import numpy as np
import pytest

from cma_builder.source import gltffile
from cma_builder.source.gltffile import BLENDER_EXTENSIONS, inspect_gltf

# --- builders -----------------------------------------------------------------------------------


def glb_bytes(doc: dict, bin_: bytes | None = None) -> bytes:
    """A GLB of a JSON document and an optional BIN chunk (both padded to 4 bytes)."""
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text
    if bin_ is not None:
        bin_ += b"\x00" * (-len(bin_) % 4)
        chunks += struct.pack("<I4s", len(bin_), b"BIN\x00") + bin_
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def triangle() -> tuple[dict, bytes]:
    """A valid glTF document of one indexed triangle and its buffer (36 bytes of positions, 6 of indices)."""
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    indices = np.array([0, 1, 2], np.uint16).tobytes()
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"},
        ],
        "bufferViews": [{"buffer": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 6}],
        "buffers": [{"byteLength": 42}],
    }
    return doc, positions + indices


def triangle_glb(path, edit=None):
    """Write the one-triangle GLB to ``path``, after ``edit(doc)`` changes its JSON."""
    doc, bin_ = triangle()
    if edit is not None:
        edit(doc)
    path.write_bytes(glb_bytes(doc, bin_))
    return path


def draco_glb(path, vertices, faces):
    """Write a GLB whose one mesh is Draco-compressed (KHR_draco_mesh_compression, required) and
    return (n_vertices, n_triangles) as the Draco data decodes. The accessors keep their counts and
    have no bufferView, as the extension prescribes."""
    import DracoPy

    data = DracoPy.encode(np.asarray(vertices, np.float32), np.asarray(faces, np.uint32), preserve_order=True)
    decoded = DracoPy.decode(data)
    n_points, n_faces = len(decoded.points), len(decoded.faces)
    position_id = decoded.attributes[0]["unique_id"]
    lo, hi = decoded.points.min(axis=0).tolist(), decoded.points.max(axis=0).tolist()
    doc = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["KHR_draco_mesh_compression"],
        "extensionsRequired": ["KHR_draco_mesh_compression"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{
            "attributes": {"POSITION": 0}, "indices": 1, "mode": 4,
            "extensions": {"KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": position_id}}},
        }]}],
        "accessors": [
            {"componentType": 5126, "count": n_points, "type": "VEC3", "min": lo, "max": hi},
            {"componentType": 5125, "count": 3 * n_faces, "type": "SCALAR"},
        ],
        "bufferViews": [{"buffer": 0, "byteLength": len(data)}],
        "buffers": [{"byteLength": len(data)}],
    }
    path.write_bytes(glb_bytes(doc, data))
    return n_points, n_faces


def codes(path) -> list[str]:
    return [p.code for p in inspect_gltf(path).problems]


def trimesh_counts(path) -> tuple[int, int]:
    """(triangles, vertices) as trimesh loads the file (instances expanded), the independent reference."""
    import trimesh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geometry = trimesh.load(path, force="scene", process=False).dump()
    return sum(len(getattr(g, "faces", ())) for g in geometry), sum(len(g.vertices) for g in geometry)


# --- a valid file --------------------------------------------------------------------------------


def test_one_triangle_glb(tmp_path):
    info = inspect_gltf(triangle_glb(tmp_path / "t.glb"))
    assert info.problems == []
    assert (info.n_meshes, info.n_triangles, info.n_vertices) == (1, 1, 3)
    assert trimesh_counts(tmp_path / "t.glb") == (1, 3)


def test_instances_scenes_modes_and_colors(tmp_path):
    def edit(doc):
        doc["nodes"] = [{"children": [1, 2, 3]}, {"mesh": 0}, {"mesh": 0}, {"mesh": 0}, {"mesh": 0}]
        doc["scenes"] = [{"nodes": [4]}, {"nodes": [0]}]
        doc["scene"] = 1  # the default scene: three instances of the mesh, not scene 0's one
        prims = doc["meshes"][0]["primitives"]
        prims[0]["attributes"]["COLOR_0"] = 0
        prims += [{"attributes": {"POSITION": 0}, "mode": 5}, {"attributes": {"POSITION": 0}, "mode": 6},
                  {"attributes": {"POSITION": 0}, "mode": 1}, {"attributes": {"POSITION": 0}, "indices": 1, "mode": 0}]

    info = inspect_gltf(triangle_glb(tmp_path / "i.glb", edit))
    assert info.n_meshes == 3
    assert info.n_triangles == 3 * (1 + 1 + 1)  # a triangle, a 3-vertex strip and a 3-vertex fan
    assert info.n_vertices == 3 * 5 * 3
    assert info.vertex_colors
    assert [(p.severity, p.code) for p in info.problems] == [("note", "points_lines_skipped")]
    assert info.problems[0].detail.startswith("6 of 15 primitives")
    # trimesh 5.2 loads lines and points without faces and strips as triangles, but skips fans
    # ("skipping primitive with mode 6"), which Blender's importer triangulates: 1 triangle per instance.
    assert trimesh_counts(tmp_path / "i.glb")[0] == info.n_triangles - 3


def test_without_scenes_every_root_node_counts(tmp_path):
    def edit(doc):
        del doc["scene"], doc["scenes"]
        doc["nodes"] = [{"mesh": 0, "children": [1]}, {"mesh": 0}, {"mesh": 0}]

    info = inspect_gltf(triangle_glb(tmp_path / "n.glb", edit))
    assert (info.n_meshes, info.n_triangles, info.problems) == (3, 3, [])


def test_gpu_instancing_counts_each_instance(tmp_path):
    def edit(doc):
        doc["extensionsUsed"] = ["EXT_mesh_gpu_instancing"]
        doc["nodes"][0]["extensions"] = {"EXT_mesh_gpu_instancing": {"attributes": {"TRANSLATION": 0}}}

    info = inspect_gltf(triangle_glb(tmp_path / "g.glb", edit))
    assert (info.n_meshes, info.n_triangles, info.problems) == (3, 3, [])


def test_counts_notes_and_extensions(tmp_path):
    def edit(doc):
        doc["animations"] = [{"channels": [], "samplers": []}]
        doc["skins"] = [{"joints": [0]}, {"joints": [0]}]
        doc["materials"] = [{}, {}]
        doc["extensionsUsed"] = ["KHR_materials_clearcoat", "KHR_texture_transform", "VENDOR_unknown"]
        doc["extensionsRequired"] = ["KHR_materials_clearcoat", "KHR_texture_transform"]

    info = inspect_gltf(triangle_glb(tmp_path / "c.glb", edit))
    assert (info.n_animations, info.n_armatures, info.n_materials) == (1, 2, 2)
    assert info.extensions == ["KHR_materials_clearcoat", "KHR_texture_transform", "VENDOR_unknown"]
    assert sorted(p.code for p in info.problems) == ["animations", "skinned"]
    assert {p.severity for p in info.problems} == {"note"}


def test_supported_extensions_are_blenders_list():
    """The list is the one in Blender 5.0's importer (io_scene_gltf2/io/imp/gltf2_io_gltf.py), read
    again here from the installed addon when it is present."""
    import re
    import sys
    from pathlib import Path

    source = next(Path(sys.prefix).glob("lib/python3*/site-packages/bpy/*/scripts/addons_core/io_scene_gltf2/"
                                        "io/imp/gltf2_io_gltf.py"), None)
    if source is None:
        pytest.skip("Blender's glTF importer is not installed")
    block = re.search(r"self\.extensions_managed = \[(.*?)\]", source.read_text(), re.S).group(1)
    assert BLENDER_EXTENSIONS == set(re.findall(r"'([A-Za-z0-9_]+)'", block))
    assert "KHR_texture_basisu" not in BLENDER_EXTENSIONS and "EXT_meshopt_compression" not in BLENDER_EXTENSIONS


# --- broken files --------------------------------------------------------------------------------


def _set(path_in_doc, value):
    def edit(doc):
        *parents, last = path_in_doc
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
    return edit


def _nodes(nodes, roots=(0,)):
    def edit(doc):
        doc["nodes"], doc["scenes"] = nodes, [{"nodes": list(roots)}]
    return edit


@pytest.mark.parametrize("edit, code, words", [
    (_set(("nodes", 0, "mesh"), 5), "gltf_bad_index", "meshes[5]"),
    (_set(("scenes", 0, "nodes"), [0, 3]), "gltf_bad_index", "nodes[3]"),
    (_set(("scene",), 2), "gltf_bad_index", "scenes[2]"),
    (_set(("meshes", 0, "primitives", 0, "indices"), 7), "gltf_bad_index", "accessors[7]"),
    (_set(("meshes", 0, "primitives", 0, "attributes", "POSITION"), -1), "gltf_bad_index", "accessors[-1]"),
    (_set(("accessors", 1, "bufferView"), 9), "gltf_bad_index", "bufferViews[9]"),
    (_set(("bufferViews", 1, "buffer"), 1), "gltf_bad_index", "buffers[1]"),
    (_set(("meshes", 0, "primitives", 0, "mode"), 9), "gltf_bad_index", "mode 9"),
    (_nodes([{"mesh": 0}, {"children": [2]}, {"children": [1]}], (0, 1)), "gltf_bad_index", "cycle"),
    (_nodes([{"children": [0], "mesh": 0}]), "gltf_bad_index", "node 0 is its own ancestor"),
    (_nodes([{"children": [1]}, {"children": [0], "mesh": 0}]), "gltf_bad_index", "node"),
    (_nodes([{"children": [2]}, {"children": [2]}, {"mesh": 0}], (0, 1)), "gltf_bad_index", "child of nodes 0 and 1"),
    (_set(("accessors", 0, "count"), 4), "gltf_truncated", "accessor 0"),
    (_set(("accessors", 1, "byteOffset"), 2), "gltf_truncated", "accessor 1"),
    (_set(("bufferViews", 1, "byteLength"), 8), "gltf_truncated", "bufferView 1"),
    (_set(("buffers", 0, "byteLength"), 10**12), "gltf_truncated", "claims 1000000000000 bytes"),
    (_set(("asset", "version"), "1.0"), "gltf_not_gltf", "1.0"),
    (_set(("asset", "version"), "2.1"), "gltf_not_gltf", "'2.0'"),
    (_set(("nodes",), {"0": {"mesh": 0}}), "gltf_not_gltf", "nodes"),
    (_set(("accessors", 0, "count"), "3"), "gltf_not_gltf", "count"),
    (_set(("accessors", 0, "type"), "VEC5"), "gltf_not_gltf", "VEC5"),
    (_set(("extensionsRequired",), ["KHR_texture_basisu"]), "gltf_extension_unsupported", "KHR_texture_basisu"),
    (_set(("extensionsRequired",), ["EXT_meshopt_compression"]), "gltf_extension_unsupported",
     "EXT_meshopt_compression"),
    (_set(("extensionsRequired",), ["KHR_materials_iridescence"]), "gltf_extension_unsupported", "iridescence"),
    (_set(("extensionsRequired",), ["KHR_materials_clearcoat"]), "gltf_extension_unsupported", "extensionsUsed"),
    (_set(("nodes", 0), {}), "no_triangles", "none of its 1 nodes has a mesh"),
    (_set(("scenes", 0, "nodes"), []), "no_triangles", "has no nodes"),
    (_set(("meshes", 0, "primitives", 0, "mode"), 0), "no_triangles", "points or lines"),
    (_set(("accessors", 1, "count"), 0), "no_triangles", "hold no triangle"),
])
def test_defects_in_the_json_are_reported(tmp_path, edit, code, words):
    info = inspect_gltf(triangle_glb(tmp_path / "bad.glb", edit))
    found = [p for p in info.problems if p.code == code]
    assert found and found[0].severity == "error", info.problems
    assert words in found[0].detail and "\n" not in found[0].detail


def test_a_claimed_terabyte_buffer_is_neither_read_nor_allocated(tmp_path):
    path = triangle_glb(tmp_path / "big.glb", _set(("buffers", 0, "byteLength"), 10**12))
    start = time.perf_counter()
    assert codes(path) == ["gltf_truncated"]
    assert time.perf_counter() - start < 0.5


def _raw_glb(json_text=None, magic=b"glTF", version=2, length_delta=0, chunk_type=b"JSON"):
    """The one-triangle GLB, or one of other JSON bytes, with a chosen header and first chunk type."""
    doc, bin_ = triangle()
    text = json.dumps(doc).encode() if json_text is None else json_text
    text += b" " * (-len(text) % 4)
    bin_ += b"\x00" * (-len(bin_) % 4)
    chunks = struct.pack("<I4s", len(text), chunk_type) + text + struct.pack("<I4s", len(bin_), b"BIN\x00") + bin_
    return struct.pack("<4sII", magic, version, 12 + len(chunks) + length_delta) + chunks


@pytest.mark.parametrize("data, code", [
    (_raw_glb(length_delta=4), "gltf_truncated"),  # the length field claims more than the file
    (_raw_glb(length_delta=-4), "gltf_truncated"),
    (_raw_glb()[:-10], "gltf_truncated"),  # cut inside the BIN chunk
    (_raw_glb()[:40], "gltf_truncated"),  # cut inside the JSON chunk
    (_raw_glb()[:16], "gltf_truncated"),  # cut inside the JSON chunk header
    (b"glT", "gltf_truncated"),
    (b"", "gltf_truncated"),
    (_raw_glb(magic=b"gLTF"), "gltf_not_gltf"),
    (_raw_glb(version=1), "gltf_not_gltf"),
    (_raw_glb(chunk_type=b"BIN\x00"), "gltf_not_gltf"),
    (_raw_glb(b'{"asset": {"version": "2.0"}, "nodes": [{'), "gltf_not_gltf"),
    (_raw_glb(b'{"asset": {"version": "2.0"}, "x": NaN}'), "gltf_not_gltf"),
    (_raw_glb(b"[1, 2]"), "gltf_not_gltf"),
    (_raw_glb(b'{"asset": {"version": "2.0"}, "name": "\xff"}'), "gltf_not_gltf"),
    (_raw_glb(b'{"nodes": []}'), "gltf_not_gltf"),  # no asset
    (_raw_glb(b"[" * 100000 + b"]" * 100000), "gltf_not_gltf"),
])
def test_defects_in_the_container_are_reported(tmp_path, data, code):
    path = tmp_path / "bad.glb"
    path.write_bytes(data)
    info = inspect_gltf(path)
    assert code in [p.code for p in info.problems], info.problems
    assert all(p.severity == "error" for p in info.problems)


def test_a_glb_without_its_bin_chunk_misses_its_buffer(tmp_path):
    doc, _ = triangle()
    path = tmp_path / "nobin.glb"
    path.write_bytes(glb_bytes(doc))
    assert codes(path) == ["buffer_missing"]


def test_only_the_header_and_json_chunk_are_read(tmp_path, monkeypatch):
    doc, bin_ = triangle()
    doc["buffers"][0]["byteLength"] = 42 + 2**20
    path = tmp_path / "large.glb"
    path.write_bytes(glb_bytes(doc, bin_ + bytes(2**20)))
    read = []

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(gltffile, "open", lambda *a, **k: Counting(open(*a, **k)), raising=False)
    assert inspect_gltf(path).problems == []
    assert sum(read) < 2000


def test_an_unexpected_failure_becomes_inspect_failed(tmp_path, monkeypatch):
    def boom(doc, info):
        raise RuntimeError("unforeseen\nproblem")

    monkeypatch.setattr(gltffile, "_count", boom)
    info = inspect_gltf(triangle_glb(tmp_path / "t.glb"))
    assert [(p.severity, p.code) for p in info.problems] == [("error", "inspect_failed")]
    assert info.problems[0].detail == "RuntimeError: unforeseen problem"


def test_a_missing_file_becomes_inspect_failed(tmp_path):
    assert codes(tmp_path / "absent.glb") == ["inspect_failed"]


# --- .gltf with external and data-URI resources ---------------------------------------------------


def _write_gltf(folder, doc, bin_=None, name="m.gltf"):
    if bin_ is not None:
        (folder / "m.bin").write_bytes(bin_)
    (folder / name).write_text(json.dumps(doc))
    return folder / name


def test_gltf_with_external_bin_and_textures(tmp_path):
    doc, bin_ = triangle()
    doc["buffers"][0]["uri"] = "m.bin"
    doc["images"] = [{"uri": "tex/base%20color.png"}, {"uri": "gone.png"}, {"uri": "data:image/png;base64,iVBO"},
                     {"bufferView": 0, "mimeType": "image/png"}, {"uri": "gone.png"}]
    (tmp_path / "tex").mkdir()
    (tmp_path / "tex" / "base color.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    info = inspect_gltf(_write_gltf(tmp_path, doc, bin_))
    assert (info.n_triangles, info.n_vertices) == (1, 3)
    assert info.textures == ["tex/base%20color.png", "gone.png"]
    assert info.textures_missing == ["gone.png"]
    assert [(p.severity, p.code) for p in info.problems] == [("warn", "texture_missing")]
    assert "gone.png" in info.problems[0].detail


def test_gltf_missing_or_short_bin(tmp_path):
    doc, bin_ = triangle()
    doc["buffers"][0]["uri"] = "m.bin"
    path = _write_gltf(tmp_path, doc)
    assert codes(path) == ["buffer_missing"]
    _write_gltf(tmp_path, doc, bin_[:30])
    info = inspect_gltf(path)
    assert [p.code for p in info.problems] == ["gltf_truncated"]
    assert "'m.bin' holds 30" in info.problems[0].detail


def test_gltf_data_uri_buffer(tmp_path):
    import base64

    doc, bin_ = triangle()
    doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(bin_).decode()
    assert inspect_gltf(_write_gltf(tmp_path, doc)).problems == []
    doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(bin_[:40]).decode()
    assert codes(_write_gltf(tmp_path, doc)) == ["gltf_truncated"]


def test_gltf_that_is_not_json(tmp_path):
    (tmp_path / "x.gltf").write_text("solid cube\nfacet normal 0 0 1\n")
    assert codes(tmp_path / "x.gltf") == ["gltf_not_gltf"]


# --- Draco -------------------------------------------------------------------------------------


def test_draco_compressed_glb(tmp_path):
    pytest.importorskip("DracoPy")
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(50, 3))
    faces = np.array([(i, (i + 1) % 50, (i + 7) % 50) for i in range(50)])
    n_points, n_faces = draco_glb(tmp_path / "d.glb", vertices, faces)
    assert (n_points, n_faces) == (50, len(faces))
    info = inspect_gltf(tmp_path / "d.glb")
    assert (info.n_meshes, info.n_vertices, info.n_triangles) == (1, n_points, n_faces)
    assert info.extensions == ["KHR_draco_mesh_compression"]
    assert [(p.severity, p.code) for p in info.problems] == [("note", "draco")]
    # trimesh 5.2 decodes KHR_draco_mesh_compression on load (with DracoPy): the same counts.
    assert trimesh_counts(tmp_path / "d.glb") == (n_faces, n_points)


def test_draco_glb_written_by_trimesh(tmp_path):
    """trimesh 5.2 also writes Draco GLBs (extension_draco=True): an independent writer."""
    pytest.importorskip("DracoPy")
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2)
    path = tmp_path / "two.glb"
    path.write_bytes(trimesh.Scene([sphere, sphere.copy()]).export(file_type="glb", extension_draco=True))
    info = inspect_gltf(path)
    assert (info.n_meshes, info.n_triangles, info.n_vertices) == (2, 2 * len(sphere.faces), 2 * len(sphere.vertices))
    assert [p.code for p in info.problems] == ["draco"] and info.problems[0].detail.startswith("2 primitives")


# --- real files --------------------------------------------------------------------------------


def test_real_files_match_trimesh(real_assets):
    files = sorted((real_assets / "glb").glob("*.glb")) + sorted((real_assets / "gltf").glob("*.gltf"))
    assert len(files) >= 20
    for path in files:
        info = inspect_gltf(path)
        assert not [p for p in info.problems if p.severity != "note"], (path.name, info.problems)
        # None of these files holds points or lines, so trimesh's triangles and vertices are all of them.
        assert (info.n_triangles, info.n_vertices) == trimesh_counts(path), path.name


def test_real_files_details(real_assets):
    glb = real_assets / "glb"
    for name in ("godot-player-player.glb", "godot-enemy-enemy.glb", "godot-characters-mannequiny.glb"):
        info = inspect_gltf(glb / name)
        assert info.n_armatures == 1 and info.n_animations >= 4, name
        assert {"skinned", "animations"} <= {p.code for p in info.problems}, name
    assert inspect_gltf(glb / "pins.glb").n_meshes == 7  # 2 meshes, instanced by 7 nodes
    assert inspect_gltf(glb / "simple_pole.glb").n_meshes == 11
    assert inspect_gltf(glb / "godot-meshes-meshes.glb").extensions == ["KHR_materials_clearcoat"]
    # README calls it a points/lines primitive mode; it is mode 5, a 4-vertex triangle strip: 2 triangles.
    strip = inspect_gltf(real_assets / "gltf" / "Mesh_PrimitiveMode_04.gltf")
    assert (strip.n_triangles, strip.n_vertices, strip.problems) == (2, 4, [])
    empty = inspect_gltf(real_assets / "faulty" / "empty_nodes.glb")
    assert [(p.code, p.detail) for p in empty.problems] == [("no_triangles", "scene 0: none of its 3 nodes has a mesh")]


def test_real_files_damaged(real_assets, tmp_path):
    data = (real_assets / "glb" / "Duck.glb").read_bytes()
    (tmp_path / "cut.glb").write_bytes(data[: len(data) // 2])
    assert "gltf_truncated" in codes(tmp_path / "cut.glb")
    text = (real_assets / "gltf" / "TestScene.gltf").read_text()
    (tmp_path / "TestScene.gltf").write_text(text)  # without its TestScene.bin
    assert codes(tmp_path / "TestScene.gltf") == ["buffer_missing"]
    doc = json.loads(text)
    broken = copy.deepcopy(doc)
    broken["nodes"][6]["children"] = [1]  # node 1 holds node 6: a cycle 1 -> 6 -> 1
    broken["nodes"][0]["children"] = [7, 8]
    (tmp_path / "TestScene.gltf").write_text(json.dumps(broken))
    (tmp_path / "TestScene.bin").write_bytes((real_assets / "gltf" / "TestScene.bin").read_bytes())
    assert codes(tmp_path / "TestScene.gltf") == ["gltf_bad_index"]
