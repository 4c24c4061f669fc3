"""Shared pieces of the image-based formats: RGBA / 16-bit PNG writing, camera conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes: (x right, y down, z fwd) -> (x right, y up, z back)


def write_rgba(path: Path, rgb: np.ndarray, mask: np.ndarray) -> None:
    """8-bit RGBA PNG: alpha 255 where a surface covers the pixel center, 0 elsewhere."""
    rgba = np.concatenate([rgb, np.where(mask, 255, 0).astype(np.uint8)[..., None]], axis=-1)
    Image.fromarray(rgba, "RGBA").save(path, compress_level=4)


def write_depth16(path: Path, depth: np.ndarray, scale: float) -> None:
    """Grayscale 16-bit PNG of round(depth / scale) (0 = no surface); the caller checks the range."""
    Image.fromarray(quantize_depth(depth, scale)).save(path, compress_level=4)


def quantize_depth(depth: np.ndarray, scale: float) -> np.ndarray:
    return np.rint(np.asarray(depth, dtype=np.float64) / scale).astype(np.uint16)


def cam_to_world(world_to_cam: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 (rotation transposed), as float64."""
    w2c = np.asarray(world_to_cam, dtype=np.float64)
    R, t = w2c[:3, :3], w2c[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z), Hamilton, w >= 0, of a rotation matrix (Shepperd's method: the largest of
    the four squared components is taken from the diagonal, the others from off-diagonal sums)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    diag = [tr, R[0, 0], R[1, 1], R[2, 2]]
    i = int(np.argmax(diag))
    if i == 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif i == 1:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif i == 2:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def view_name(k: int) -> str:
    return f"view_{k:03d}.png"


def point_colors(rgb: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """RGB (uint8) of the pixel each point was back-projected from: ``origin`` rows (view, v, u)."""
    o = np.asarray(origin, dtype=np.int64)
    return rgb[o[:, 0], o[:, 1], o[:, 2]]
