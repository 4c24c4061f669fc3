"""Batched, device-agnostic point-cloud ops in pure PyTorch.

Naive reference implementations of each op live in ``pcssl_train.ops.reference`` (tests only).
If pytorch3d is importable (``HAS_PYTORCH3D``), FPS and kNN on CUDA tensors dispatch to it; set
``PCSSL_NO_PYTORCH3D=1`` to always use the pure-PyTorch path.
"""

from .chamfer import chamfer_distance, nearest_neighbor_dist2
from .fps import farthest_point_sample
from .grouping import Patches, gather_points, group_patches, normalize_patches
from .knn import HAS_PYTORCH3D, knn, knn_graph
from .projection import project

__all__ = [
    "HAS_PYTORCH3D",
    "Patches",
    "chamfer_distance",
    "farthest_point_sample",
    "gather_points",
    "group_patches",
    "knn",
    "knn_graph",
    "nearest_neighbor_dist2",
    "normalize_patches",
    "project",
]
