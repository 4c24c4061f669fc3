"""Training data: samples of a cma-build dataset read in place (see docs/TRAINING_DATA.md)."""

from .cma_dataset import KINDS, SAMPLINGS, SPLITS, CmaDataset, ShardArray, farthest_point_sample, sample_indices
from .transforms import Augment

__all__ = ["CmaDataset", "Augment", "ShardArray", "KINDS", "SPLITS", "SAMPLINGS", "farthest_point_sample",
           "sample_indices"]
