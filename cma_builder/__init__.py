"""cma_builder: turn ShapeNetCore.v2 into a multi-view RGB-D + point-cloud dataset.

Modules: ``taxonomy`` (synset ids and names), ``splits`` (deterministic train/val/test),
``objfile`` (OBJ/MTL inspection), ``shapenet`` (tree discovery), ``manifest``
(scan manifest rows), ``scan`` (the ``cma-build scan`` job), ``synth`` (procedural
mini-ShapeNet), ``cli`` (the ``cma-build`` command).
"""

__version__ = "0.1.0"
