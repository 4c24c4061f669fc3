"""The geometry core: cameras, projection and back-projection, visibility, FPS, ray casting, point maps."""
