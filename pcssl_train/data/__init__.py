"""Training data: samples of a cma-build dataset read in place (see docs/TRAINING_DATA.md)."""

from .cma_dataset import KINDS, SAMPLINGS, SPLITS, CmaDataset, sample_indices
from .transforms import Augment

__all__ = ["CmaDataset", "Augment", "KINDS", "SPLITS", "SAMPLINGS", "sample_indices"]
