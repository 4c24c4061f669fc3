"""Small raster helpers for the preview sheets (numpy + Pillow): a depth color map, nearest
upscaling, point splats, an orthographic point-cloud view, labels and a scale bar."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Turbo (Google, 2019) as its published polynomial fit: x in [0, 1] -> RGB in [0, 1].
_TURBO_LOW = np.array([[0.13572138, 4.61539260, -42.66032258, 132.13108234],
                       [0.09140261, 2.19418839, 4.84296658, -14.18503333],
                       [0.10667330, 12.64194608, -60.58204836, 110.36276771]])
_TURBO_HIGH = np.array([[-152.94239396, 59.28637943], [4.27729857, 2.82956604], [-89.90310912, 27.34824973]])


def turbo(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8 RGB (..., 3): blue (0) through green to red (1)."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)[..., None]
    low = np.stack([np.ones_like(x[..., 0]), x[..., 0], x[..., 0] ** 2, x[..., 0] ** 3], axis=-1)
    high = np.stack([x[..., 0] ** 4, x[..., 0] ** 5], axis=-1)
    rgb = low @ _TURBO_LOW.T + high @ _TURBO_HIGH.T
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def upscale(img: np.ndarray, s: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor (pixel (v, u) -> an s x s block)."""
    return np.repeat(np.repeat(img, s, axis=0), s, axis=1) if s > 1 else img


def gray_backdrop(rgb: np.ndarray) -> np.ndarray:
    """RGB -> a light gray copy (R = G = B exactly), so colored marks on it stand out."""
    g = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    g = np.round(0.45 * g + 0.55 * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def splat(canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray, colors: np.ndarray, size: int) -> None:
    """Draw size x size squares centered at (rows, cols) (continuous canvas pixel coordinates,
    pixel centers at integer + 0.5) in order: later points cover earlier ones."""
    H, W = canvas.shape[:2]
    top = np.floor(rows - size / 2.0 + 0.5).astype(np.int64)
    left = np.floor(cols - size / 2.0 + 0.5).astype(np.int64)
    for dv in range(size):
        for du in range(size):
            r, c = top + dv, left + du
            ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
            canvas[r[ok], c[ok]] = colors[ok]


def cloud_view(points: np.ndarray, colors: np.ndarray, azimuth: float, elevation: float, size: int,
               background=(38, 38, 38), dot: int = 2) -> np.ndarray:
    """Orthographic picture of a point cloud (Y up, azimuth 0 = looking at the -Z front) with
    far points drawn first."""
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = background
    if len(points) == 0:
        return canvas
    a, e = np.radians(azimuth), np.radians(elevation)
    forward = -np.array([np.sin(a) * np.cos(e), np.sin(e), -np.cos(a) * np.cos(e)])  # camera -> object
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    p = points - points.mean(axis=0)
    x, y, z = p @ right, p @ up, p @ forward
    scale = 0.9 * size / (2 * max(np.abs(x).max(), np.abs(y).max(), 1e-12))
    order = np.argsort(-z)  # far first
    splat(canvas, size / 2 - y[order] * scale, size / 2 + x[order] * scale, colors[order], dot)
    return canvas


def wrap(lines: list[str], width: float, size: int) -> list[str]:
    """``lines`` broken so that none is wider than ``width`` pixels in the font of ``size``: at a
    field separator (a run of 2+ spaces) where one fits, else between words, else between characters."""
    f = font(size)
    out: list[str] = []
    for line in lines:
        if f.getlength(line) <= width:
            out.append(line)
            continue
        fields = re.split(r"(?<=\S)(\s{2,})(?=\S)", line)  # [field, sep, field, sep, ...]
        current = ""
        for i in range(0, len(fields), 2):
            piece = fields[i]
            joined = current + (fields[i - 1] if current else "") + piece
            if f.getlength(joined) <= width:
                current = joined
                continue
            if current:
                out.append(current)
            current = ""
            for word in piece.split(" "):  # a field too long on its own: between words
                joined = f"{current} {word}" if current else word
                if f.getlength(joined) <= width:
                    current = joined
                    continue
                if current:
                    out.append(current)
                current = word
                while f.getlength(current) > width and len(current) > 1:  # a word too long: between characters
                    cut = len(current) - 1
                    while cut > 1 and f.getlength(current[:cut]) > width:
                        cut -= 1
                    out.append(current[:cut])
                    current = current[cut:]
        out.append(current)
    return out


def text_image(lines: list[str], width: int, size: int = 14, color=(20, 20, 20), background=(255, 255, 255),
               pad: int = 4) -> np.ndarray:
    """The lines on a ``width``-wide strip, each wrapped to fit (see wrap)."""
    lines = wrap(lines, width - 2 * pad, size)
    h = pad * 2 + int(size * 1.3) * len(lines)
    img = Image.new("RGB", (width, h), background)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * int(size * 1.3)), line, fill=color, font=font(size))
    return np.array(img)


def label(canvas: Image.Image, xy: tuple[int, int], text: str, size: int = 13, color=(20, 20, 20)) -> None:
    ImageDraw.Draw(canvas).text(xy, text, fill=color, font=font(size))


def scale_bar(height: int, lo: float, hi: float, title: str, width: int = 90) -> np.ndarray:
    """A vertical turbo bar from lo (bottom) to hi (top) with its end values written beside it."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    bar_w, top, bottom = 14, 18, height - 8
    ramp = turbo(np.linspace(1.0, 0.0, max(bottom - top, 2)))[:, None, :].repeat(bar_w, axis=1)
    img.paste(Image.fromarray(ramp), (6, top))
    draw = ImageDraw.Draw(img)
    draw.text((4, 2), title, fill=(20, 20, 20), font=font(12))
    draw.text((6 + bar_w + 4, top - 2), f"{hi:.3g}", fill=(20, 20, 20), font=font(12))
    draw.text((6 + bar_w + 4, bottom - 14), f"{lo:.3g}", fill=(20, 20, 20), font=font(12))
    return np.array(img)
