"""The one place where the dataset's camera convention meets Rerun's (pure numpy; tested with numbers).

Both use the same camera frame: OpenCV's x right, y down, z forward is Rerun's ``RDF``, so
``world_to_cam`` goes to Rerun unchanged, as a transform from the object frame to the camera entity
(``TransformRelation.ChildFromParent``). The image coordinates differ by half a pixel: the dataset
puts pixel (v, u)'s center at (u, v) (docs/CONVENTIONS.md), Rerun at (u + 0.5, v + 0.5), its images
spanning [0, W] x [0, H] (rerun-io/rerun#3896). So the principal point moves by +0.5 and nothing else.
Rerun stores transforms and intrinsics as float32.
"""

from __future__ import annotations

import numpy as np

PIXEL_SHIFT = 0.5  # Rerun's image coordinate of the center of pixel 0 (the dataset's is 0)


def rerun_image_from_camera(K: np.ndarray) -> np.ndarray:
    """Rerun's ``image_from_camera`` for the dataset's intrinsics ``K`` (3x3, integer pixel centers)."""
    out = np.array(K, dtype=np.float64)
    out[:2, 2] += PIXEL_SHIFT
    return out


def stored_K(image_from_camera: np.ndarray) -> np.ndarray:
    """The dataset's K back from Rerun's ``image_from_camera``."""
    out = np.array(image_from_camera, dtype=np.float64)
    out[:2, 2] -= PIXEL_SHIFT
    return out


def rerun_translation_rotation(world_to_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(translation, 3x3 rotation) of the camera entity's transform from its parent (the object)."""
    w2c = np.asarray(world_to_cam, dtype=np.float64)
    return w2c[:3, 3].copy(), w2c[:3, :3].copy()


def project_rerun(points: np.ndarray, image_from_camera: np.ndarray, translation: np.ndarray,
                  rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rerun image coordinates (x, y) and camera z of object-frame ``points`` (N, 3) through a pinhole
    as Rerun records it."""
    cam = np.asarray(points, dtype=np.float64) @ np.asarray(rotation, dtype=np.float64).T + translation
    uvw = cam @ np.asarray(image_from_camera, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


def rerun_pixel(xy: np.ndarray) -> np.ndarray:
    """The (v, u) pixel index a Rerun image coordinate (x, y) falls on."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.floor(xy[:, ::-1]).astype(np.int64)


def rerun_xy(vu: np.ndarray) -> np.ndarray:
    """Rerun image coordinates (x, y) of dataset image positions (v, u) such as ``fused_pixels``."""
    vu = np.asarray(vu, dtype=np.float64)
    return vu[:, ::-1] + PIXEL_SHIFT
