"""One loss per file (lightly style)."""

from .chamfer import ChamferLoss
from .info_nce import SymmetricInfoNCELoss
from .nt_xent import NTXentLoss
from .perturbation import PerturbationLoss
from .vector_quantization import VQLoss

__all__ = ["ChamferLoss", "NTXentLoss", "PerturbationLoss", "SymmetricInfoNCELoss", "VQLoss"]
