"""Pinhole cameras in the conventions of docs/CONVENTIONS.md (pure numpy).

- World frame: the OBJ file's own frame and units (ShapeNet: Y up, -Z front).
- Camera frame: OpenCV, x right, y down, z forward. ``world_to_cam`` is 4x4: X_cam = R X + t.
- Intrinsics ``K`` in pixels with integer pixel centers: pixel (v, u) = (row, column) covers
  [u - 0.5, u + 0.5] x [v - 0.5, v + 0.5]; the principal point of a W x H image is ((W-1)/2, (H-1)/2).
- Viewpoints: a direction from the look-at target to the camera, from azimuth a and
  elevation e in degrees: (sin a cos e, sin e, -cos a cos e). Azimuth 0 is the object's
  front (-Z), azimuth 90 its +X side; elevation 90 is straight above (+Y).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cma_builder.errors import CmaError

SCHEMES = ("ring", "sphere", "random", "file")
WORLD_UP = np.array([0.0, 1.0, 0.0])
BLENDER_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])  # Blender cameras look down -Z with +Y up


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """K for a horizontal field of view with square pixels and a centered principal point."""
    f = (width / 2.0) / np.tan(np.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def direction(azimuth_deg, elevation_deg) -> np.ndarray:
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.sin(a) * np.cos(e), np.sin(e) * np.ones_like(a), -np.cos(a) * np.cos(e)], axis=-1)


def look_at(position, target) -> np.ndarray:
    """OpenCV world_to_cam (4x4) of a camera at ``position`` looking at ``target`` with image
    up along world +Y (along world -Z, the front, when looking straight up or down)."""
    position, target = np.asarray(position, dtype=np.float64), np.asarray(target, dtype=np.float64)
    z = target - position
    z /= np.linalg.norm(z)
    up = WORLD_UP if abs(z @ WORLD_UP) < 0.999 else np.array([0.0, 0.0, -1.0])
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([x, y, z])
    w2c[:3, 3] = -w2c[:3, :3] @ position
    return w2c


def camera_center(world_to_cam: np.ndarray) -> np.ndarray:
    """World position of the camera of a 4x4 world_to_cam."""
    return -world_to_cam[:3, :3].T @ world_to_cam[:3, 3]


def blender_matrix_world(world_to_cam: np.ndarray) -> np.ndarray:
    """Blender's camera ``matrix_world`` for an OpenCV world_to_cam (camera looks down its -Z)."""
    r, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    m = np.eye(4)
    m[:3, :3] = r.T @ BLENDER_FROM_OPENCV
    m[:3, 3] = -r.T @ t
    return m


def project(points: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) into one camera (K (3, 3), world_to_cam (4, 4)) or a batch of them
    (K (..., 3, 3), world_to_cam (..., 4, 4)) -> (pixels (N, ..., 2) as (v, u) floats, camera z (N, ...)).

    Points behind the camera get mirrored pixels and z <= 0; z = 0 gives inf or nan pixels.
    """
    if world_to_cam.ndim == 2:  # one camera: a plain matrix product (as validate and preview always computed it)
        cam = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    else:
        cam = np.einsum("...ij,nj->n...i", world_to_cam[..., :3, :3], points) + world_to_cam[..., :3, 3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[..., 0, 0] * cam[..., 0] / z + K[..., 0, 2]
        v = K[..., 1, 1] * cam[..., 1] / z + K[..., 1, 2]
    return np.stack([v, u], axis=-1), z


@dataclass(frozen=True)
class ViewpointSpec:
    scheme: str = "ring"
    views: int = 12
    elevations: tuple[float, ...] = (30.0,)  # ring: one ring per elevation, views split evenly
    seed: int = 0  # random: combined with the model id
    poses: tuple | None = None  # file: parsed entries

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise CmaError(f"unknown viewpoint scheme '{self.scheme}'; expected one of {', '.join(SCHEMES)}")
        if self.views < 1:
            raise CmaError(f"--views must be at least 1, got {self.views}")
        if self.scheme == "ring" and self.views % len(self.elevations):
            raise CmaError(f"--views {self.views} does not split evenly over {len(self.elevations)} ring elevations")


def load_pose_file(path: Path) -> tuple:
    """Parse a JSON list of poses: {"azimuth", "elevation"[, "distance"]} or {"world_to_cam": 4x4}."""
    try:
        entries = json.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CmaError(f"{path}: not a readable JSON pose list ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(entries, list) or not entries:
        raise CmaError(f"{path}: expected a non-empty JSON list of poses")
    poses = []
    for i, e in enumerate(entries):
        if isinstance(e, dict) and "world_to_cam" in e:
            m = np.asarray(e["world_to_cam"], dtype=np.float64)
            rot = m[:3, :3] if m.shape == (4, 4) else None
            if rot is None or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-5) or np.linalg.det(rot) < 0:
                raise CmaError(f"{path}: pose {i}: world_to_cam must be a 4x4 rigid transform (rotation with det +1)")
            poses.append(("matrix", tuple(map(tuple, m))))
        elif isinstance(e, dict) and {"azimuth", "elevation"} <= set(e):
            dist = e.get("distance")
            poses.append(("angles", float(e["azimuth"]), float(e["elevation"]), None if dist is None else float(dist)))
        else:
            raise CmaError(f"{path}: pose {i}: expected {{'azimuth', 'elevation'[, 'distance']}} or {{'world_to_cam'}}")
    return tuple(poses)


def view_angles(spec: ViewpointSpec, model_id: str) -> list[tuple[float, float, float | None]]:
    """(azimuth, elevation, distance or None) per view for the angle-based schemes."""
    n = spec.views
    if spec.scheme == "ring":
        per = n // len(spec.elevations)
        return [(360.0 * k / per, float(e), None) for e in spec.elevations for k in range(per)]
    if spec.scheme == "sphere":  # Fibonacci lattice: even coverage of the sphere
        k = np.arange(n) + 0.5
        y = 1.0 - 2.0 * k / n
        phi = np.degrees(k * np.pi * (3.0 - np.sqrt(5.0)))
        return [(float(a % 360.0), float(np.degrees(np.arcsin(yy))), None) for a, yy in zip(phi, y)]
    if spec.scheme == "random":  # uniform on the sphere, seeded per (seed, model)
        digest = hashlib.sha256(f"{spec.seed}:{model_id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        el = np.degrees(np.arcsin(np.clip(d[:, 1], -1, 1)))
        az = np.degrees(np.arctan2(d[:, 0], -d[:, 2])) % 360.0
        return [(float(a), float(e), None) for a, e in zip(az, el)]
    raise ValueError(spec.scheme)


def fit_distance(radius: float, fov_deg: float) -> float:
    """Distance at which a sphere of ``radius`` exactly fills the horizontal field of view."""
    return radius / np.sin(np.radians(fov_deg) / 2.0)


def camera_rig(spec: ViewpointSpec, model_id: str, center, radius: float, fov_deg: float, resolution: int,
               distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(K (V, 3, 3), world_to_cam (V, 4, 4)) for one object whose bounding sphere is (center, radius).
    ``distance`` None fits the bounding sphere in the frame."""
    center = np.asarray(center, dtype=np.float64)
    K = intrinsics(resolution, resolution, fov_deg)
    default = fit_distance(radius, fov_deg) if distance is None else float(distance)
    mats = []
    if spec.scheme == "file":
        for pose in spec.poses:
            if pose[0] == "matrix":
                mats.append(np.asarray(pose[1], dtype=np.float64))
            else:
                _, az, el, d = pose
                mats.append(look_at(center + direction(az, el) * (default if d is None else d), center))
    else:
        for az, el, _ in view_angles(spec, model_id):
            mats.append(look_at(center + direction(az, el) * default, center))
    w2c = np.stack(mats)
    return np.broadcast_to(K, (len(w2c), 3, 3)).copy(), w2c
