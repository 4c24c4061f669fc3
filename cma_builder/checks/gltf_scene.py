"""A glTF scene's triangles in numpy: the reference of ``validate --source`` where trimesh's
reading differs from the glTF specification (and from what cma-build renders).

- Skins: trimesh places a skinned mesh by its node's transform and ignores the skin. The spec
  (section 3.7.3) with no animation: each vertex is ``sum_k w_k world(joint_k) inverseBind_k
  position`` with the joints' own node transforms.
- Triangle fans (mode 6): trimesh 5.2 drops them.
- ``EXT_mesh_gpu_instancing``: trimesh ignores it; each instance is the node's mesh placed by
  ``world(node) @ T_i R_i S_i``.

Unskinned meshes are placed by their node's world transform; the whole default scene, in the
file's own (+Y up) frame. Triangles only (modes 4, 5, 6); points and lines are left out, as at
render. Draco-compressed primitives are not read here (trimesh reads those files).
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np

from cma_builder.paths import leads_outside

_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


class GltfFile:
    """A glTF 2.0 file's JSON and buffers (GLB BIN chunk, side files next to it, data URIs)."""

    def __init__(self, path: str | Path, buffers: bool = True, root: str | Path | None = None):
        path = Path(path)
        self.root = Path(root) if root is not None else path.parent  # side files must lie inside it
        data = path.read_bytes()
        self.bin = b""
        if data[:4] == b"glTF":
            length = struct.unpack_from("<I", data, 12)[0]
            self.json = json.loads(data[20:20 + length])
            rest = 20 + length
            if len(data) >= rest + 8 and data[rest + 4:rest + 8] == b"BIN\x00":
                self.bin = data[rest + 8:rest + 8 + struct.unpack_from("<I", data, rest)[0]]
        else:
            self.json = json.loads(data)
        self.buffers = [self._buffer(path.parent, b) for b in self.json.get("buffers", [])] if buffers else []

    def _buffer(self, folder: Path, buf: dict) -> bytes:
        uri = buf.get("uri")
        if uri is None:
            return self.bin
        if uri.startswith("data:"):
            return base64.b64decode(uri.split(",", 1)[1])
        from urllib.parse import unquote

        side = folder / unquote(uri)
        if leads_outside(self.root, side):
            raise ValueError(f"buffer '{uri[:80]}' leads outside {self.root}")
        return side.read_bytes()

    def accessor(self, index: int) -> np.ndarray:
        """Accessor ``index`` as a (count, width) array (float64 when normalized), sparse applied."""
        a = self.json["accessors"][index]
        dtype, width, count = np.dtype(_DTYPES[a["componentType"]]), _WIDTH[a["type"]], a["count"]
        out = np.zeros((count, width), dtype)
        if "bufferView" in a:
            view = self.json["bufferViews"][a["bufferView"]]
            buf = self.buffers[view["buffer"]]
            stride = view.get("byteStride") or dtype.itemsize * width
            start = view.get("byteOffset", 0) + a.get("byteOffset", 0)
            rows = np.frombuffer(buf, np.uint8, count=stride * (count - 1) + dtype.itemsize * width, offset=start)
            rows = np.lib.stride_tricks.as_strided(rows, (count, dtype.itemsize * width), (stride, 1))
            out = np.ascontiguousarray(rows).view(dtype).reshape(count, width).copy()
        sparse = a.get("sparse")
        if sparse:
            idx = self._view(sparse["indices"], np.dtype(_DTYPES[sparse["indices"]["componentType"]]), sparse["count"], 1)
            out[idx[:, 0].astype(np.int64)] = self._view(sparse["values"], dtype, sparse["count"], width)
        if a.get("normalized"):
            return np.maximum(out.astype(np.float64) / np.iinfo(dtype).max, -1.0)
        return out

    def _view(self, ref: dict, dtype: np.dtype, count: int, width: int) -> np.ndarray:
        view = self.json["bufferViews"][ref["bufferView"]]
        start = view.get("byteOffset", 0) + ref.get("byteOffset", 0)
        return np.frombuffer(self.buffers[view["buffer"]], dtype, count * width, start).reshape(count, width)


def node_local(node: dict) -> np.ndarray:
    """A node's local 4x4 matrix (``matrix``, else T @ R @ S)."""
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
    m = np.eye(4)
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, :3] *= np.asarray(node.get("scale", (1.0, 1.0, 1.0)), dtype=np.float64)
    m[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return m


def node_worlds(nodes: list[dict]) -> list[np.ndarray]:
    """Every node's world matrix (the product of the local matrices up its parent chain)."""
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}
    worlds: dict[int, np.ndarray] = {}

    def world(i: int) -> np.ndarray:
        if i not in worlds:
            worlds[i] = (world(parent[i]) if i in parent else np.eye(4)) @ node_local(nodes[i])
        return worlds[i]

    return [world(i) for i in range(len(nodes))]


def _instances(f: GltfFile, node: dict) -> list[np.ndarray]:
    """The local matrices of a node's EXT_mesh_gpu_instancing instances (identity without it)."""
    ext = node.get("extensions", {}).get(INSTANCING)
    if not ext:
        return [np.eye(4)]
    attrs = ext.get("attributes", {})
    n = f.json["accessors"][next(iter(attrs.values()))]["count"]
    t = f.accessor(attrs["TRANSLATION"]).astype(np.float64) if "TRANSLATION" in attrs else np.zeros((n, 3))
    r = f.accessor(attrs["ROTATION"]).astype(np.float64) if "ROTATION" in attrs else np.tile([0.0, 0, 0, 1], (n, 1))
    s = f.accessor(attrs["SCALE"]).astype(np.float64) if "SCALE" in attrs else np.ones((n, 3))
    return [node_local({"translation": t[k], "rotation": r[k], "scale": s[k]}) for k in range(n)]


def _triangles(mode: int, idx: np.ndarray) -> np.ndarray:
    if mode == 4:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    k = np.arange(len(idx) - 2)
    if mode == 5:  # strip: every other triangle flipped to keep the winding
        even = k % 2 == 0
        return np.where(even[:, None], np.stack([idx[k], idx[k + 1], idx[k + 2]], 1),
                        np.stack([idx[k + 1], idx[k], idx[k + 2]], 1))
    return np.stack([np.full(len(k), idx[0]), idx[k + 1], idx[k + 2]], 1)  # fan


INSTANCING = "EXT_mesh_gpu_instancing"


def needs_reference(path: str | Path) -> bool:
    """Whether trimesh would read this glTF/GLB otherwise than the spec: skins, fans, instancing."""
    j = GltfFile(path, buffers=False).json
    fans = any(p.get("mode", 4) == 6 for m in j.get("meshes", []) for p in m.get("primitives", []))
    return bool(j.get("skins")) or fans or INSTANCING in j.get("extensionsUsed", [])


def scene_mesh(path: str | Path, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of the default scene, skinned meshes skinned in the nodes' own pose.
    Side files (``.bin`` buffers) must lie inside ``root`` (default: the file's folder)."""
    f = GltfFile(path, root=root)
    j = f.json
    nodes = j.get("nodes", [])
    worlds = node_worlds(nodes)
    scenes = j.get("scenes") or [{"nodes": [i for i in range(len(nodes)) if not any(
        i in n.get("children", []) for n in nodes)]}]
    stack, reach = list(scenes[j.get("scene", 0)].get("nodes", [])), []
    while stack:
        i = stack.pop()
        reach.append(i)
        stack += nodes[i].get("children", [])
    verts, tris, offset = [], [], 0
    for i in sorted(reach):
        node = nodes[i]
        if "mesh" not in node:
            continue
        joints = None
        if "skin" in node:
            skin = j["skins"][node["skin"]]
            n = len(skin["joints"])
            inverse = (f.accessor(skin["inverseBindMatrices"]).reshape(n, 4, 4).transpose(0, 2, 1)
                       if "inverseBindMatrices" in skin else np.broadcast_to(np.eye(4), (n, 4, 4)))
            joints = np.stack([worlds[jn] @ inverse[k] for k, jn in enumerate(skin["joints"])])
        for prim in j["meshes"][node["mesh"]]["primitives"]:
            mode = prim.get("mode", 4)
            if mode not in (4, 5, 6):
                continue
            if "KHR_draco_mesh_compression" in prim.get("extensions", {}):
                raise ValueError("a Draco-compressed primitive in a skinned file (the skinning reference reads "
                                 "plain accessors only)")
            v = f.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
            idx = f.accessor(prim["indices"])[:, 0].astype(np.int64) if "indices" in prim else np.arange(len(v))
            if joints is not None and "JOINTS_0" in prim["attributes"]:
                jidx = f.accessor(prim["attributes"]["JOINTS_0"]).astype(np.int64)
                w = f.accessor(prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
                for extra in (1, 2, 3):  # JOINTS_1/WEIGHTS_1 ...: more influences per vertex
                    if f"JOINTS_{extra}" in prim["attributes"]:
                        jidx = np.hstack([jidx, f.accessor(prim["attributes"][f"JOINTS_{extra}"]).astype(np.int64)])
                        w = np.hstack([w, f.accessor(prim["attributes"][f"WEIGHTS_{extra}"]).astype(np.float64)])
                w = w / np.where(w.sum(1, keepdims=True) > 0, w.sum(1, keepdims=True), 1.0)
                m = np.einsum("vk,vkij->vij", w, joints[jidx])
                v = np.einsum("vij,vj->vi", m[:, :3, :3], v) + m[:, :3, 3]
                places = [np.eye(4)]
            else:
                places = [worlds[i] @ m for m in _instances(f, node)]
            t = _triangles(mode, idx)
            for m in places:
                verts.append(v @ m[:3, :3].T + m[:3, 3])
                tris.append(t + offset)
                offset += len(v)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(verts), np.concatenate(tris)
