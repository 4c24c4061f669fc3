"""Inspect glTF 2.0 files (binary ``.glb`` and text ``.gltf``): counts, references and defects.

Built for scans of 100,000-file collections: of a GLB only the 12-byte header, the JSON chunk
and the BIN chunk's 8-byte header are read; buffers and images are never read or decoded, and
every size a file claims is checked arithmetically against the bytes that exist. Counts cover
the default scene (``scene``, else scene 0, else every root node) with instancing: a mesh used
by 3 nodes counts 3 times. Defects are :class:`Problem` values, never raised.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from cma_builder.paths import leads_outside
from cma_builder.source.fileinfo import FileInfo
from cma_builder.source.objfile import error, note, warn

# The extensions Blender 5.0's glTF importer reads: ``glTFImporter.extensions_managed`` in
# bpy/5.0/scripts/addons_core/io_scene_gltf2/io/imp/gltf2_io_gltf.py. Its ``checks()`` fails the
# import ("Extension %s is not available on this addon version") when extensionsRequired names
# any other (KHR_texture_basisu, EXT_meshopt_compression, KHR_materials_iridescence, ...), and
# also when a required extension is missing from extensionsUsed.
BLENDER_EXTENSIONS = frozenset({
    "KHR_materials_pbrSpecularGlossiness", "KHR_lights_punctual", "KHR_materials_unlit",
    "KHR_texture_transform", "KHR_materials_clearcoat", "KHR_mesh_quantization", "EXT_mesh_gpu_instancing",
    "KHR_draco_mesh_compression", "KHR_materials_variants", "KHR_materials_emissive_strength",
    "KHR_materials_transmission", "KHR_materials_specular", "KHR_materials_sheen", "KHR_materials_ior",
    "KHR_animation_pointer", "KHR_materials_volume", "EXT_texture_webp", "KHR_materials_anisotropy",
})

_DRACO = "KHR_draco_mesh_compression"
_INSTANCING = "EXT_mesh_gpu_instancing"
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_TRIANGLES, _STRIP_FAN, _POINTS_LINES = (4,), (5, 6), (0, 1, 2, 3)  # tuples: a mode may be unhashable


ABSURD_MIN = 1 << 26  # bytes an accessor without a bufferView may always claim (64 MiB)
ABSURD_RATIO = 1000  # else at most this many times the file's size (Draco expands ~10-50x)

class _Malformed(Exception):
    """The JSON is not shaped as glTF (a list where an object belongs, a count that is no integer)."""


@dataclass
class _Doc:
    gltf: dict
    base: Path  # folder that relative URIs start from
    bin_len: int | None  # bytes of the GLB BIN chunk present in the file; None: no BIN chunk
    root: Path | None = None  # the collection: external files must lie inside it
    file_bytes: int = 0
    bad: list[str] = field(default_factory=list)  # bad index descriptions
    short: list[str] = field(default_factory=list)  # ranges that run past their buffer
    absurd: list[str] = field(default_factory=list)  # counts no data in the file could hold
    _arrays: dict[str, list[dict]] = field(default_factory=dict)

    def objs(self, key: str) -> list[dict]:
        """The top-level array ``key`` (checked once to be a list of objects)."""
        if key not in self._arrays:
            self._arrays[key] = _objs(self.gltf.get(key), key)
        return self._arrays[key]


def inspect_gltf(path: Path, root: Path | None = None) -> FileInfo:
    """Counts and defects of a ``.glb`` or ``.gltf`` file. Never raises. External buffers and
    images must lie inside ``root`` (error ``path_outside``)."""
    info = FileInfo()
    try:
        _inspect(Path(path), info, root)
    except _Malformed as exc:
        info.problems.append(error("gltf_not_gltf", f"malformed glTF: {exc}"))
    except Exception as exc:  # an unforeseen defect must not stop a scan
        info.problems.append(error("inspect_failed", _one_line(f"{type(exc).__name__}: {exc}")))
    return info


def _inspect(path: Path, info: FileInfo, root: Path | None = None) -> None:
    gltf, bin_len = _load(path, info)
    if gltf is None or not _version_ok(gltf, info):
        return
    doc = _Doc(gltf, path.parent, bin_len, root, path.stat().st_size)
    info.extensions = _strings(gltf.get("extensionsUsed"), "extensionsUsed")
    _check_extensions(doc, info)
    _check_refs(doc)
    _check_hierarchy(doc)
    _check_sizes(doc, info)
    _count(doc, info)
    _textures(doc, info)
    _report(info, "gltf_bad_index", doc.bad)
    _report(info, "gltf_truncated", doc.short)
    _report(info, "gltf_absurd_size", doc.absurd)
    info.problems.sort(key=lambda p: ("error", "warn", "note").index(p.severity))


# --- reading -------------------------------------------------------------------------------------

def _load(path: Path, info: FileInfo) -> tuple[dict | None, int | None]:
    """The JSON document (None when unreadable) and the GLB BIN chunk's length."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(12)
        if head[:4] == b"glTF":  # Blender sniffs the magic, whatever the suffix
            return _load_glb(fh, head, size, info)
        if path.suffix.lower() == ".glb":
            if b"glTF".startswith(head[:4]):
                info.problems.append(error("gltf_truncated", f"file is {size} bytes; a GLB header is 12"))
            else:
                info.problems.append(error("gltf_not_gltf", f"magic is {head[:4]!r}, not b'glTF'"))
            return None, None
        return _parse_json(head + fh.read(), info), None


def _load_glb(fh, head: bytes, size: int, info: FileInfo) -> tuple[dict | None, int | None]:
    if len(head) < 12:
        info.problems.append(error("gltf_truncated", f"file is {size} bytes; a GLB header is 12"))
        return None, None
    version, length = struct.unpack("<II", head[4:12])
    if version != 2:
        info.problems.append(error("gltf_not_gltf", f"GLB version {version}; Blender reads version 2"))
        return None, None
    if length != size:
        info.problems.append(error("gltf_truncated", f"GLB header says {length} bytes; the file has {size}"))
    chunk = fh.read(8)
    if len(chunk) < 8:
        info.problems.append(error("gltf_truncated", f"file ends at byte {size}, inside the JSON chunk header"))
        return None, None
    json_len, kind = struct.unpack("<I4s", chunk)
    if kind != b"JSON":
        info.problems.append(error("gltf_not_gltf", f"first chunk is {kind!r}, not JSON"))
        return None, None
    if 20 + json_len > size:
        info.problems.append(error("gltf_truncated", f"JSON chunk of {json_len} bytes runs past the end of the "
                                                     f"file ({size - 20} bytes left)"))
        return None, None
    gltf = _parse_json(fh.read(json_len), info)
    return gltf, _bin_chunk(fh, 20 + json_len, size, info)


def _bin_chunk(fh, offset: int, size: int, info: FileInfo) -> int | None:
    """Bytes of the BIN chunk that the file holds (its header only is read), None without one."""
    if offset >= size:
        return None
    if offset + 8 > size:
        info.problems.append(error("gltf_truncated", f"file ends at byte {size}, inside the second chunk header"))
        return None
    fh.seek(offset)
    length, kind = struct.unpack("<I4s", fh.read(8))
    if kind != b"BIN\x00":  # Blender ignores any other second chunk
        return None
    left = size - offset - 8
    if length > left:
        info.problems.append(error("gltf_truncated", f"BIN chunk of {length} bytes runs past the end of the file "
                                                     f"({left} bytes left)"))
        return left
    return length


def _parse_json(data: bytes, info: FileInfo) -> dict | None:
    def constant(name):  # NaN, Infinity: Blender's importer rejects them too
        raise ValueError(f"JSON holds {name}")

    try:
        gltf = json.loads(str(data, "utf-8"), parse_constant=constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        info.problems.append(error("gltf_not_gltf", _one_line(f"JSON does not parse: {exc}")))
        return None
    if not isinstance(gltf, dict):
        info.problems.append(error("gltf_not_gltf", f"JSON is a {type(gltf).__name__}, not an object"))
        return None
    return gltf


def _version_ok(gltf: dict, info: FileInfo) -> bool:
    """Blender's importer reads asset.version "2.0" only (``check_version``)."""
    asset = gltf.get("asset")
    version = asset.get("version") if isinstance(asset, dict) else None
    if version == "2.0":
        return True
    if not isinstance(asset, dict):
        detail = "no asset object"
    elif version is None:
        detail = "asset has no version"
    elif isinstance(version, str) and version.startswith("2."):
        detail = f"asset.version {version!r}: Blender's importer reads only '2.0'"
    else:
        detail = f"asset.version {_short(version)} is not 2.x"
    info.problems.append(error("gltf_not_gltf", detail))
    return False


# --- JSON shapes -------------------------------------------------------------------------------

def _objs(value, where: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Malformed(f"{where} is not a list of objects")
    return value


def _obj(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"{where} is not an object")
    return value


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Malformed(f"{where} is not a list of strings")
    return list(value)


def _nat(obj: dict, key: str, where: str, default: int | None = None) -> int:
    """A non-negative integer field (``default`` when absent and allowed)."""
    value = obj.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Malformed(f"{where}.{key} is {_short(value)}, not a non-negative integer")
    return value


def _index(items: list, value) -> dict | None:
    """items[value] when value is a valid index, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(items):
        return items[value]
    return None


def _ref(doc: _Doc, value, key: str, where: str) -> None:
    """Record ``where`` if ``value`` is present but no valid index into ``doc.gltf[key]``."""
    items = doc.objs(key)
    if value is not None and _index(items, value) is None:
        doc.bad.append(f"{where} refers to {key}[{_short(value)}]; the file has {len(items)}")


# --- checks -------------------------------------------------------------------------------------

def _check_extensions(doc: _Doc, info: FileInfo) -> None:
    for ext in _strings(doc.gltf.get("extensionsRequired"), "extensionsRequired"):
        if ext not in BLENDER_EXTENSIONS:
            info.problems.append(error("gltf_extension_unsupported",
                                       f"{ext} is required; Blender 5.0's glTF importer cannot read it"))
        elif ext not in info.extensions:
            info.problems.append(error("gltf_extension_unsupported",
                                       f"{ext} is in extensionsRequired but not extensionsUsed (Blender refuses)"))


def _check_refs(doc: _Doc) -> None:
    """Every index (scene, node, mesh, skin, material, accessor, bufferView, buffer, image) must be in
    range, and every primitive mode one of glTF's 0-6."""
    if doc.gltf.get("scene") is not None:
        _ref(doc, doc.gltf["scene"], "scenes", "scene")
    for i, scene in enumerate(doc.objs("scenes")):
        for n in _list(scene.get("nodes"), f"scenes[{i}].nodes"):
            _ref(doc, n, "nodes", f"scene {i}")
    for i, node in enumerate(doc.objs("nodes")):
        for n in _list(node.get("children"), f"nodes[{i}].children"):
            _ref(doc, n, "nodes", f"node {i}")
        _ref(doc, node.get("mesh"), "meshes", f"node {i}")
        _ref(doc, node.get("skin"), "skins", f"node {i}")
        for name, a in _obj(_instancing(node).get("attributes"), f"nodes[{i}] instancing").items():
            _ref(doc, a, "accessors", f"node {i} {_INSTANCING} {name}")
    for i, mesh in enumerate(doc.objs("meshes")):
        for j, prim in enumerate(_objs(mesh.get("primitives"), f"meshes[{i}].primitives")):
            where = f"mesh {i} primitive {j}"
            for name, a in _obj(prim.get("attributes"), f"meshes[{i}].primitives[{j}].attributes").items():
                _ref(doc, a, "accessors", f"{where} {name}")
            _ref(doc, prim.get("indices"), "accessors", f"{where} indices")
            _ref(doc, prim.get("material"), "materials", f"{where} material")
            for target in _objs(prim.get("targets"), f"meshes[{i}].primitives[{j}].targets"):
                for name, a in target.items():
                    _ref(doc, a, "accessors", f"{where} morph target {name}")
            draco = _obj(_obj(prim.get("extensions"), f"{where} extensions").get(_DRACO), f"{where} {_DRACO}")
            _ref(doc, draco.get("bufferView"), "bufferViews", f"{where} {_DRACO}")
            mode = prim.get("mode", 4)
            if mode not in _TRIANGLES + _STRIP_FAN + _POINTS_LINES:
                doc.bad.append(f"{where} has mode {_short(mode)}; glTF defines modes 0-6")
    for i in _rendered_accessors(doc):
        acc = doc.objs("accessors")[i]
        _ref(doc, acc.get("bufferView"), "bufferViews", f"accessor {i}")
        sparse = _obj(acc.get("sparse"), f"accessors[{i}].sparse")
        for part in ("indices", "values"):
            _ref(doc, _obj(sparse.get(part), f"accessors[{i}].sparse.{part}").get("bufferView"), "bufferViews",
                 f"accessor {i} sparse {part}")
    for i, view in enumerate(doc.objs("bufferViews")):
        if "buffer" not in view:
            raise _Malformed(f"bufferViews[{i}] has no buffer")
        _ref(doc, view["buffer"], "buffers", f"bufferView {i}")
    for i, image in enumerate(doc.objs("images")):
        _ref(doc, image.get("bufferView"), "bufferViews", f"image {i}")
    for i, texture in enumerate(doc.objs("textures")):
        _ref(doc, texture.get("source"), "images", f"texture {i}")
    for i, skin in enumerate(doc.objs("skins")):
        for n in _list(skin.get("joints"), f"skins[{i}].joints"):
            _ref(doc, n, "nodes", f"skin {i} joint")
        _ref(doc, skin.get("inverseBindMatrices"), "accessors", f"skin {i} inverseBindMatrices")


def _rendered_accessors(doc: _Doc) -> list[int]:
    """The accessors the render reads (mesh primitives, morph targets, skins, instancing), in range.
    Animation samplers are not among them: animations are not applied (docs/SOURCES.md), and files
    with thousands of keyframe accessors would otherwise cost most of a scan."""
    n = len(doc.objs("accessors"))
    refs: list = []
    for mesh in doc.objs("meshes"):
        for prim in _objs(mesh.get("primitives"), "primitives"):
            refs += list(_obj(prim.get("attributes"), "attributes").values()) + [prim.get("indices")]
            for target in _objs(prim.get("targets"), "targets"):
                refs += list(target.values())
    refs += [skin.get("inverseBindMatrices") for skin in doc.objs("skins")]
    for node in doc.objs("nodes"):
        refs += list(_obj(_instancing(node).get("attributes"), "instancing").values())
    return sorted({r for r in refs if isinstance(r, int) and not isinstance(r, bool) and 0 <= r < n})


def _list(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(f"{where} is not a list")
    return value


def _children(doc: _Doc, node: dict) -> list[int]:
    nodes = doc.objs("nodes")
    return [c for c in _list(node.get("children"), "children") if _index(nodes, c) is not None]


def _check_hierarchy(doc: _Doc) -> None:
    """Nodes must form trees: Blender's importer asserts one parent per node and recurses forever
    on a cycle."""
    nodes = doc.objs("nodes")
    parent: dict[int, int] = {}
    for i, node in enumerate(nodes):
        for c in _children(doc, node):
            if c in parent:
                doc.bad.append(f"node hierarchy: node {c} is a child of nodes {parent[c]} and {i}")
                return
            parent[c] = i
    done: set[int] = set()  # nodes whose ancestors end at a root
    for start in range(len(nodes)):  # with one parent each, a cycle is a parent chain that loops
        path, n = {start}, start
        while n in parent and n not in done:
            n = parent[n]
            if n in path:
                doc.bad.append(f"node hierarchy: node {n} is its own ancestor (a cycle)")
                return
            path.add(n)
        done |= path


def _check_sizes(doc: _Doc, info: FileInfo) -> None:
    """Accessors within their bufferViews, bufferViews within their buffers, buffers within the
    bytes that exist: all by arithmetic, nothing read."""
    buffers, views = doc.objs("buffers"), doc.objs("bufferViews")
    used = {view["buffer"] for view in views if _index(buffers, view.get("buffer")) is not None}
    for i in sorted(used):
        _check_buffer(doc, i, buffers[i], info)
    for i, view in enumerate(views):
        buf = _index(buffers, view.get("buffer"))
        end = _nat(view, "byteOffset", f"bufferViews[{i}]", 0) + _nat(view, "byteLength", f"bufferViews[{i}]")
        if buf is not None and end > _nat(buf, "byteLength", f"buffers[{view['buffer']}]"):
            doc.short.append(f"bufferView {i} ends at byte {end} of buffer {view['buffer']}, which has "
                             f"{buf['byteLength']}")
    for i in _rendered_accessors(doc):
        _check_accessor(doc, i, doc.objs("accessors")[i])


def _check_buffer(doc: _Doc, i: int, buf: dict, info: FileInfo) -> None:
    claimed = _nat(buf, "byteLength", f"buffers[{i}]")
    uri = buf.get("uri")
    if uri is None:
        if i != 0 or doc.bin_len is None:
            info.problems.append(error("buffer_missing", f"buffer {i} has no uri and the file has no GLB BIN chunk"))
            return
        have, where = doc.bin_len, "the GLB BIN chunk"
    elif not isinstance(uri, str):
        raise _Malformed(f"buffers[{i}].uri is not a string")
    elif uri.startswith("data:"):
        payload = uri.partition(";base64,")[2]
        if not payload:
            info.problems.append(error("buffer_missing", f"buffer {i} is a data URI without base64 data"))
            return
        have, where = len(payload.rstrip("=")) * 3 // 4, "its data URI"
    else:
        path = doc.base / _uri_path(uri)
        if leads_outside(doc.root, path):
            info.problems.append(error("path_outside", f"buffer {i}: '{_short(uri, 80)}' leads outside {doc.root}"))
            return
        if not path.is_file():
            info.problems.append(error("buffer_missing", f"buffer {i}: '{_short(uri, 80)}' not found"))
            return
        have, where = path.stat().st_size, f"'{_short(uri, 80)}'"
    if claimed > have:
        doc.short.append(f"buffer {i} claims {claimed} bytes; {where} holds {have}")


def _element_bytes(acc: dict, where: str) -> int:
    ctype, atype = acc.get("componentType"), acc.get("type")
    if _lookup(_COMPONENT_BYTES, ctype) is None or _lookup(_TYPE_COMPONENTS, atype) is None:
        raise _Malformed(f"{where} has componentType {_short(ctype)}, type {_short(atype)}")
    size = _COMPONENT_BYTES[ctype]
    if atype.startswith("MAT"):  # matrix columns start on 4-byte boundaries
        n = int(atype[3])
        return n * (-(-n * size // 4) * 4)
    return _TYPE_COMPONENTS[atype] * size


def _lookup(table: dict, key):
    """table[key], None for a missing or unhashable key (JSON may hold a list anywhere)."""
    return table.get(key) if isinstance(key, (int, str)) else None


def _check_accessor(doc: _Doc, i: int, acc: dict) -> None:
    where = f"accessors[{i}]"
    views = doc.objs("bufferViews")
    elem, count = _element_bytes(acc, where), _nat(acc, "count", where)
    view = _index(views, acc.get("bufferView"))
    if "bufferView" not in acc and count * elem > max(ABSURD_MIN, ABSURD_RATIO * doc.file_bytes):
        # zeros, sparse or Draco data stand behind it: no compression makes that much of this file
        doc.absurd.append(f"accessor {i} claims {count} elements ({count * elem / 1e9:.3g} GB) with no bufferView "
                          f"in a {doc.file_bytes}-byte file")
    if view is not None and count:
        stride = _nat(view, "byteStride", f"bufferViews[{acc['bufferView']}]", 0) or elem
        end = _nat(acc, "byteOffset", where, 0) + stride * (count - 1) + elem
        if end > view["byteLength"]:
            doc.short.append(f"accessor {i} ({count} x {elem} bytes) ends at byte {end} of bufferView "
                             f"{acc['bufferView']}, which has {view['byteLength']}")
    sparse = _obj(acc.get("sparse"), f"{where}.sparse")
    if sparse:
        n = _nat(sparse, "count", f"{where}.sparse")
        ind = _obj(sparse.get("indices"), f"{where}.sparse.indices")
        isize = _lookup(_COMPONENT_BYTES, ind.get("componentType")) or 4
        for part, part_size in (("indices", isize), ("values", elem)):
            ref = _obj(sparse.get(part), f"{where}.sparse.{part}")
            pview = _index(views, ref.get("bufferView"))
            end = _nat(ref, "byteOffset", f"{where}.sparse.{part}", 0) + n * part_size
            if pview is not None and end > pview["byteLength"]:
                doc.short.append(f"accessor {i} sparse {part} end at byte {end} of bufferView "
                                 f"{ref['bufferView']}, which has {pview['byteLength']}")


# --- counts -------------------------------------------------------------------------------------

def _instancing(node: dict) -> dict:
    return _obj(_obj(node.get("extensions"), "node extensions").get(_INSTANCING), _INSTANCING)


def _roots(doc: _Doc) -> tuple[list[int], str]:
    """The default scene's root nodes and how to name them."""
    nodes, scenes = doc.objs("nodes"), doc.objs("scenes")
    if scenes:
        i = doc.gltf.get("scene", 0)
        i = i if _index(scenes, i) is not None else 0
        roots = [n for n in _list(scenes[i].get("nodes"), "scene nodes") if _index(nodes, n) is not None]
        return roots, f"scene {i}"
    children = {c for node in nodes for c in _children(doc, node)}
    return [i for i in range(len(nodes)) if i not in children], "the file (no scenes)"


def _mesh_uses(doc: _Doc, roots: list[int]) -> tuple[dict[int, int], int]:
    """Instances of each mesh under ``roots`` (each node once), and the number of nodes visited."""
    nodes, meshes, accessors = doc.objs("nodes"), doc.objs("meshes"), doc.objs("accessors")
    uses: dict[int, int] = {}
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        node = nodes[n]
        if _index(meshes, node.get("mesh")) is not None:
            first = next(iter(_obj(_instancing(node).get("attributes"), _INSTANCING).values()), None)
            acc = _index(accessors, first)  # EXT_mesh_gpu_instancing: one copy per attribute element
            copies = _nat(acc, "count", f"accessors[{first}]") if acc is not None else 1
            uses[node["mesh"]] = uses.get(node["mesh"], 0) + copies
        stack.extend(reversed(_children(doc, node)))
    return uses, len(seen)


@dataclass
class _MeshCounts:
    primitives: int = 0
    triangles: int = 0
    vertices: int = 0
    points_lines: int = 0
    draco: int = 0
    colors: bool = False


def _mesh_counts(doc: _Doc, m: int) -> _MeshCounts:
    accessors = doc.objs("accessors")
    out = _MeshCounts()
    for prim in _objs(doc.objs("meshes")[m].get("primitives"), f"meshes[{m}].primitives"):
        out.primitives += 1
        attrs = _obj(prim.get("attributes"), "attributes")
        pos, ind = _index(accessors, attrs.get("POSITION")), _index(accessors, prim.get("indices"))
        n_pos = _nat(pos, "count", f"accessors[{attrs['POSITION']}]") if pos is not None else 0
        n = _nat(ind, "count", f"accessors[{prim['indices']}]") if ind is not None else n_pos
        mode = prim.get("mode", 4)
        out.vertices += n_pos
        out.colors |= "COLOR_0" in attrs
        out.draco += _DRACO in _obj(prim.get("extensions"), "extensions")
        if mode in _TRIANGLES:
            out.triangles += n // 3 if pos is not None else 0
        elif mode in _STRIP_FAN:
            out.triangles += max(n - 2, 0) if pos is not None else 0
        elif mode in _POINTS_LINES:
            out.points_lines += 1
    return out


def _count(doc: _Doc, info: FileInfo) -> None:
    info.n_materials = len(doc.objs("materials"))
    info.n_transparent = sum(m.get("alphaMode") in ("BLEND", "MASK") for m in doc.objs("materials"))
    info.n_animations = len(doc.objs("animations"))
    info.n_armatures = len(doc.objs("skins"))
    roots, label = _roots(doc)
    uses, n_nodes = _mesh_uses(doc, roots)
    total = _MeshCounts()
    for m, copies in uses.items():
        c = _mesh_counts(doc, m)
        info.n_meshes += copies
        total.primitives += copies * c.primitives
        total.triangles += copies * c.triangles
        total.vertices += copies * c.vertices
        total.points_lines += copies * c.points_lines
        total.draco += copies * c.draco
        total.colors |= c.colors
    info.n_triangles, info.n_vertices, info.vertex_colors = total.triangles, total.vertices, total.colors
    if total.points_lines:
        info.problems.append(note("points_lines_skipped", f"{total.points_lines} of {total.primitives} primitives "
                                                          "are points or lines (modes 0-3), left out"))
    if total.draco:
        info.problems.append(note("draco", f"{total.draco} primitives are Draco-compressed (decoded at render)"))
    if info.n_animations:
        info.problems.append(note("animations", f"{info.n_animations} animations (the rest pose is rendered)"))
    if info.n_armatures:
        info.problems.append(note("skinned", f"{info.n_armatures} skins"))
    if not total.triangles:
        info.problems.append(error("no_triangles", _why_empty(doc, label, roots, n_nodes, total)))


def _why_empty(doc: _Doc, label: str, roots: list[int], n_nodes: int, total: _MeshCounts) -> str:
    outside = len(doc.objs("meshes"))
    elsewhere = f" ({outside} meshes outside it)" if outside and not total.primitives else ""
    if not roots:
        return f"{label} has no nodes{elsewhere}"
    if not total.primitives:
        return f"{label}: none of its {n_nodes} nodes has a mesh{elsewhere}"
    if total.points_lines == total.primitives:
        return f"{label}: all its {total.primitives} primitives are points or lines"
    return f"{label}: its {total.primitives} primitives hold no triangle"


# --- textures -----------------------------------------------------------------------------------

def _uri_path(uri: str) -> str:
    """A relative URI as Blender resolves it (``io/com/path.py: uri_to_path``)."""
    return os.path.normpath(unquote(uri.replace("\\", "/")))


def _textures(doc: _Doc, info: FileInfo) -> None:
    """External image files as written; data URIs and bufferView images are embedded."""
    for i, image in enumerate(doc.objs("images")):
        uri = image.get("uri")
        if uri is None or (isinstance(uri, str) and uri.startswith("data:")):
            continue
        if not isinstance(uri, str):
            raise _Malformed(f"images[{i}].uri is not a string")
        if uri not in info.textures:
            info.textures.append(uri)
            if leads_outside(doc.root, doc.base / _uri_path(uri)):
                info.problems.append(error("path_outside", f"image {i}: '{_short(uri, 80)}' leads outside {doc.root}"))
            elif not (doc.base / _uri_path(uri)).is_file():
                info.textures_missing.append(uri)
    if info.textures_missing:
        names = ", ".join(_short(t, 60) for t in info.textures_missing[:3])
        more = f" and {len(info.textures_missing) - 3} more" if len(info.textures_missing) > 3 else ""
        info.problems.append(warn("texture_missing", f"{len(info.textures_missing)} of {len(info.textures)} "
                                                     f"image files not found: {names}{more}"))


# --- details -------------------------------------------------------------------------------------

def _report(info: FileInfo, code: str, details: list[str]) -> None:
    """One error for a list of defects: the first, and how many more."""
    if details:
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        info.problems.append(error(code, details[0] + more))


def _short(value, n: int = 40) -> str:
    text = _one_line(value if isinstance(value, str) else repr(value))
    return text if len(text) <= n else text[: n - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
