"""The geometry core (pure numpy; imports neither Blender nor torch): cameras and projection, back-projection
and visibility, FPS (fps: the rule in numpy; fps_kdtree: its numba kernel), normalization, ray casting, point maps."""
