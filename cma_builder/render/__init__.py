"""Rendering: settings, the driver (``driver.render``: what to render, the run's state, the index),
the one scheduling loop (``schedule``) that the local Blender worker pool (``pool``) and Ray
(``ray_pool``) plug into, the typed worker messages (``messages``), render slices for batch
arrays (``slices``), scratch folders, and the light rig and exposure. The code that runs inside
Blender is the top-level ``blender_scripts`` package."""
