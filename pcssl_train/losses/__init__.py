"""One loss per file (lightly style)."""

from .chamfer import ChamferLoss
from .perturbation import PerturbationLoss
from .vector_quantization import VQLoss

__all__ = ["ChamferLoss", "PerturbationLoss", "VQLoss"]
