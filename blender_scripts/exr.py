"""Read the EXR files the render worker asks Blender to write: single-part scanline images,
no compression, 16/32-bit channels (Blender: multilayer, exr_codec NONE, use_exr_interleave).

Pure numpy (the bpy wheel ships no OpenImageIO binding); anything else raises ExrError.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"v/1\x01"
PIXEL_TYPES = {0: "<u4", 1: "<f2", 2: "<f4"}


class ExrError(ValueError):
    pass


def _header(data: bytes) -> tuple[dict[str, tuple[str, bytes]], int]:
    if data[:4] != MAGIC:
        raise ExrError("not an OpenEXR file")
    flags = struct.unpack("<i", data[4:8])[0]
    if flags & 0x200 or flags & 0x1000:
        raise ExrError("tiled or multi-part EXR; expected a single-part scanline image (use_exr_interleave)")
    attrs, pos = {}, 8
    while True:
        end = data.index(b"\0", pos)
        name = data[pos:end].decode()
        pos = end + 1
        if not name:
            return attrs, pos
        end = data.index(b"\0", pos)
        kind = data[pos:end].decode()
        size = struct.unpack("<i", data[end + 1:end + 5])[0]
        attrs[name] = (kind, data[end + 5:end + 5 + size])
        pos = end + 5 + size


def _channels(raw: bytes) -> list[tuple[str, str]]:
    out, p = [], 0
    while raw[p] != 0:
        end = raw.index(b"\0", p)
        name = raw[p:end].decode()
        ptype = struct.unpack("<i", raw[end + 1:end + 5])[0]
        x_sampling, y_sampling = struct.unpack("<ii", raw[end + 9:end + 17])
        if (x_sampling, y_sampling) != (1, 1):
            raise ExrError(f"channel {name} is subsampled")
        out.append((name, PIXEL_TYPES[ptype]))
        p = end + 17
    return out


def read_exr(path: str | Path) -> dict[str, np.ndarray]:
    """Channel name -> (H, W) array, rows top to bottom."""
    data = Path(path).read_bytes()
    attrs, pos = _header(data)
    if attrs.get("compression", ("", b"\x00"))[1] != b"\x00":
        raise ExrError("compressed EXR; expected exr_codec NONE")
    chans = _channels(attrs["channels"][1])
    x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"][1])
    width, height = x1 - x0 + 1, y1 - y0 + 1
    offsets = np.frombuffer(data, "<u8", height, pos)
    row = np.dtype([("y", "<i4"), ("size", "<i4")] + [(name, kind, (width,)) for name, kind in chans])
    if np.any(np.diff(offsets.astype(np.int64)) != row.itemsize):
        rows = np.concatenate([np.frombuffer(data, row, 1, int(o)) for o in offsets])  # out-of-order chunks
    else:
        rows = np.frombuffer(data, row, height, int(offsets[0]))
    order = np.argsort(rows["y"], kind="stable")
    return {name: rows[name][order] for name, _ in chans}
