"""Deterministic train/val/test split by model id (seeded hash), ratios from ``manifests/splits.json``.

A model's split depends only on its id and the seed, never on which other models are
present, so subsets, re-scans and later additions keep every assignment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cma_builder.resources import load_json

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSpec:
    seed: int
    ratios: tuple[tuple[str, float], ...]  # in order; cumulative thresholds partition [0, 1)

    @classmethod
    def bundled(cls) -> "SplitSpec":
        spec = load_json("splits.json")
        ratios = tuple((name, float(spec["ratios"][name])) for name in SPLIT_NAMES)
        total = sum(r for _, r in ratios)
        if abs(total - 1.0) > 1e-9 or any(r < 0 for _, r in ratios):
            raise ValueError(f"manifests/splits.json: ratios must be >= 0 and sum to 1, got {ratios}")
        return cls(seed=int(spec["seed"]), ratios=ratios)

    def unit(self, model_id: str) -> float:
        """Uniform number in [0, 1) from sha256('<seed>:<model_id>')."""
        digest = hashlib.sha256(f"{self.seed}:{model_id}".encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    def assign(self, model_id: str) -> str:
        u = self.unit(model_id)
        edge = 0.0
        for name, ratio in self.ratios:
            edge += ratio
            if u < edge:
                return name
        return self.ratios[-1][0]  # u within float rounding of 1.0
