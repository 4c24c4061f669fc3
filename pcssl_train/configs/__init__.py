"""Bundled YAML run configs (published settings and tiny CPU ones)."""
