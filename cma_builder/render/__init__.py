"""Rendering: settings, the driver, the Blender worker pool (local and Ray transports), slices."""
