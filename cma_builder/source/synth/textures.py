"""Procedural texture images (wood, fabric, checker, stripes, label), deterministic per rng."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

KINDS = ("wood", "fabric", "checker", "stripes", "label")
SIZE = 128


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random grid in [0, 1), (size, size)."""
    grid = rng.random((cells + 1, cells + 1))
    x = np.linspace(0, cells, size, endpoint=False)
    i = x.astype(int)
    f = x - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _mix(a, b, t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a * (1 - t[..., None]) + b * t[..., None]


def make_texture(kind: str, rng: np.random.Generator, base, accent, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8 image of the given kind in the two colors (RGB in [0, 1])."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "wood":
        warp = _smooth_noise(rng, size, 4)
        t = 0.5 + 0.5 * np.sin((yy * rng.uniform(10, 20) + 3 * warp) * 2 * np.pi)
        img = _mix(base, np.asarray(base) * 0.55, t**3)
    elif kind == "fabric":
        period = int(rng.integers(4, 9))
        weave = ((np.arange(size)[:, None] // period + np.arange(size)[None, :] // period) % 2).astype(float)
        img = _mix(base, accent, 0.25 * weave + 0.35 * _smooth_noise(rng, size, 16))
    elif kind == "checker":
        n = int(rng.integers(2, 6))
        img = _mix(base, accent, ((np.floor(xx * 2 * n) + np.floor(yy * 2 * n)) % 2).astype(float))
    elif kind == "stripes":
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(3, 8)
        img = _mix(base, accent, (np.floor(t * 2) % 2).astype(float))
    elif kind == "label":
        img = _mix(base, accent, np.zeros_like(xx))
        top, bottom = sorted(rng.uniform(0.2, 0.8, 2))
        band = (yy > top) & (yy < bottom)
        img[band] = np.asarray(accent) * 0.5 + 0.5
        for row in np.linspace(top + 0.05, bottom - 0.05, 3):
            line = (np.abs(yy - row) < 0.015) & (xx > 0.15) & (xx < rng.uniform(0.5, 0.85)) & band
            img[line] = np.asarray(base) * 0.3
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {KINDS}")
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_jpeg(image: np.ndarray, path: Path) -> None:
    """Write a baseline JPEG (deterministic bytes for a given image and Pillow version)."""
    iio.imwrite(path, image, extension=".jpg", quality=90)
