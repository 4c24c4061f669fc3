"""Ray casting of triangle meshes with open3d's RaycastingScene (Embree inside), for exact
visibility (geometry.segment_visibility) in the render worker and in validate."""

from __future__ import annotations

import time

import numpy as np


def _o3d():
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


class MeshRaycaster:
    """First hits of rays against one triangle mesh (float32 inside, as Embree computes)."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, threads: int = 0):
        o3d = _o3d()
        self.triangle_count = int(len(triangles))
        self.threads = threads  # 0: open3d's default (all cores)
        self.seconds = 0.0  # spent in first_hit so far
        self._core = o3d.core
        self._scene = o3d.t.geometry.RaycastingScene()
        if len(triangles):
            self._scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
                                      o3d.core.Tensor(np.ascontiguousarray(triangles, dtype=np.uint32)))

    @classmethod
    def from_obj(cls, path: str, threads: int = 0) -> "MeshRaycaster":
        """The OBJ's triangles as open3d reads them (independent of Blender)."""
        return cls(*read_obj(path), threads)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance of each point to the nearest triangle."""
        return self._scene.compute_distance(self._core.Tensor(np.ascontiguousarray(points, dtype=np.float32)),
                                            nthreads=self.threads).numpy().astype(np.float64)

    def first_hit(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Per ray, the smallest t > 0 with origin + t * direction on a triangle; inf if none."""
        if self.triangle_count == 0 or len(origins) == 0:
            return np.full(len(origins), np.inf)
        start = time.perf_counter()
        rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
        hit = self._scene.cast_rays(self._core.Tensor(rays), nthreads=self.threads)
        self.seconds += time.perf_counter() - start
        return hit["t_hit"].numpy().astype(np.float64)


def read_obj(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, triangles (T, 3) int64) of an OBJ as open3d reads it (independent of Blender)."""
    legacy = _o3d().io.read_triangle_mesh(str(path), enable_post_processing=False)
    return np.asarray(legacy.vertices, dtype=np.float64), np.asarray(legacy.triangles, dtype=np.int64)
