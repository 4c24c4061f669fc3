"""pcssl_train: self-supervised point-cloud pretraining directly on cma-build datasets."""

__version__ = "0.1.0"
