"""Bundled reference data (installed as ``cma_builder.manifests``): the ShapeNetCore.v2
taxonomy fallback and the train/val/test split definition."""
