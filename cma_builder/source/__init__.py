"""Where models come from: the ShapeNet tree, OBJ/MTL inspection, scan manifests, taxonomy, splits, synthetic models."""
