"""``cma-build view``: a dataset's objects in Rerun (cameras, images, depth and points in one 3D frame)."""
