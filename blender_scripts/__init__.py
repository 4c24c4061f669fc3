"""Code that runs inside Blender (the bpy module): the render worker and its scene.

``exr`` is plain numpy; ``scene`` and ``worker`` import bpy, so only worker processes load them.
"""
