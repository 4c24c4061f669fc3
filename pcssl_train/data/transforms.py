"""Augmentations and geometry used by :class:`~pcssl_train.data.CmaDataset` (pure numpy functions).

Every geometric change is ONE transform of the world frame, ``X' = A X + t``, applied to all the
points of a sample; when the sample has cameras, ``A = s R`` (a similarity) and the cameras follow
(:func:`transform_cameras`), so projecting the new points with the same ``K`` gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """Random augmentation of a sample. Defaults = Point-MAE's pretraining augmentation
    (PointcloudScaleAndTranslate); everything else is off until set.

    scale_low/high: scale factor range, per axis (``anisotropic``) for kinds without cameras,
        one isotropic factor for kinds with cameras (an anisotropic scale is no camera motion).
    translate: translation range ``U(-translate, translate)`` per axis (normalized units).
    rotate_deg: rotation about the up axis (+y, ShapeNet is y-up) by ``U(-rotate_deg, rotate_deg)``.
    jitter_sigma/jitter_clip: Gaussian noise per point (points only: breaks the pixel maps by that
        much); 0.01 / 0.05 is PointNet's setting.
    flip: probability of a horizontal image flip ("view" kind; cameras stay consistent).
    brightness/contrast/saturation: color jitter strengths (factor ``U(1-x, 1+x)``), RGB only.
    """

    scale_low: float = 2.0 / 3.0
    scale_high: float = 3.0 / 2.0
    anisotropic: bool = True
    translate: float = 0.2
    rotate_deg: float = 0.0
    jitter_sigma: float = 0.0
    jitter_clip: float = 0.05
    flip: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def color(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation)


def rotation_y(angle: float) -> np.ndarray:
    """Rotation by ``angle`` (radians) about +y."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def random_similarity(aug: Augment, rng: np.random.Generator, cameras: bool) -> tuple[np.ndarray, np.ndarray]:
    """(A, t) for ``X' = A X + t``: scale, then rotation about +y, then translation. ``A = s R``
    unless ``cameras`` is false and ``aug.anisotropic`` (then ``A = R diag(s)``)."""
    per_axis = aug.anisotropic and not cameras
    scale = rng.uniform(aug.scale_low, aug.scale_high, size=3 if per_axis else 1)
    angle = np.deg2rad(rng.uniform(-aug.rotate_deg, aug.rotate_deg)) if aug.rotate_deg else 0.0
    t = rng.uniform(-aug.translate, aug.translate, size=3) if aug.translate else np.zeros(3)
    return rotation_y(angle) * scale[None, :], t  # R @ diag(scale)


def transform_points(points: np.ndarray, A: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (points @ A.T + t).astype(np.float32)


def split_similarity(A: np.ndarray) -> tuple[float, np.ndarray]:
    """(s, R) of a similarity ``A = s R`` (R a rotation, s > 0)."""
    s = float(np.cbrt(np.linalg.det(A)))
    return s, A / s


def transform_cameras(world_to_cam: np.ndarray, A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """world_to_cam (..., 4, 4) after the world moved by ``X' = s R X + t``: rotation ``R_w R^T``,
    translation ``s t_w - R_w R^T t``. Camera coordinates scale by s, so pixels are unchanged and
    world_to_cam stays rigid."""
    s, R = split_similarity(A)
    out = world_to_cam.astype(np.float64, copy=True)
    rot = world_to_cam[..., :3, :3] @ R.T
    out[..., :3, :3] = rot
    out[..., :3, 3] = s * world_to_cam[..., :3, 3] - rot @ t
    return out


def flip_reflection(world_to_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, b): the world reflection ``X' = H X + b`` across the camera's y-z plane through its center,
    i.e. camera x -> -x. With K's cx -> W-1-cx, the mirrored points project to u -> W-1-u under the
    same (rigid) world_to_cam."""
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    M = np.diag([-1.0, 1.0, 1.0])
    return R.T @ M @ R, R.T @ (M - np.eye(3)) @ t


def flip_view(points: np.ndarray, pixels: np.ndarray, rgb: np.ndarray | None, K: np.ndarray,
              world_to_cam: np.ndarray, width: int, extra: np.ndarray | None = None):
    """Horizontal flip of one view: mirrored points (and ``extra`` points, e.g. the fused cloud),
    pixels ``u -> W-1-u`` (-1 kept), image flipped (``rgb`` (H, W, C) or None), ``cx -> W-1-cx``.
    world_to_cam is unchanged. Returns (points, pixels, rgb, K, extra)."""
    H, b = flip_reflection(world_to_cam)
    points = transform_points(points, H, b)
    extra = None if extra is None else transform_points(extra, H, b)
    pixels = pixels.copy()
    valid = pixels[:, 1] >= 0
    pixels[valid, 1] = width - 1 - pixels[valid, 1]
    K = K.copy()
    K[0, 2] = width - 1 - K[0, 2]
    rgb = None if rgb is None else rgb[:, ::-1]
    return points, pixels, rgb, K, extra


def jitter(points: np.ndarray, rng: np.random.Generator, sigma: float, clip: float) -> np.ndarray:
    noise = np.clip(rng.normal(0.0, sigma, size=points.shape), -clip, clip)
    return (points + noise).astype(np.float32)


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float,
                 saturation: float) -> np.ndarray:
    """Brightness, contrast, saturation (in that order) of a float image (3, H, W) in [0, 1]."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = np.array(rgb, dtype=np.float32)  # a copy, then in place

    def factor(x):
        return np.float32(rng.uniform(max(0.0, 1.0 - x), 1.0 + x))

    if brightness:
        out *= factor(brightness)
    if contrast:
        f = factor(contrast)
        mean = np.tensordot(weights, out, axes=1).mean()
        out *= f
        out += (1 - f) * mean
    if saturation:
        f = factor(saturation)
        gray = np.tensordot(weights, out, axes=1)
        out *= f
        out += (1 - f) * gray
    return np.clip(out, 0.0, 1.0, out=out)


def item_rng(item, epoch: int, seed: int, size: int) -> tuple[int, np.random.Generator]:
    """(index, generator) of a dataset item ``i`` or ``(epoch, i)``: a sample's randomness depends only
    on (seed, epoch, index)."""
    epoch, i = item if isinstance(item, tuple) else (epoch, item)
    i = int(i)
    if not 0 <= i < size:
        raise IndexError(f"sample {i} out of range (dataset of {size})")
    return i, np.random.default_rng([seed, int(epoch), i])
