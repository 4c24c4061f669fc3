"""Slices of a render for batch-scheduler arrays (Slurm, Kubernetes indexed jobs, ...).

Slice ``i`` of ``n`` holds the selected models whose ``sha256("part:<model id>")`` is ``i``
modulo ``n``: deterministic, independent of the tree's listing order and of the other slices,
and together the slices are exactly the unsliced selection (``--limit`` applies first).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from cma_builder.errors import CmaError


def slice_of(model_id: str, count: int) -> int:
    """Which of ``count`` slices renders this model."""
    return int(hashlib.sha256(f"part:{model_id}".encode()).hexdigest()[:16], 16) % count


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise CmaError(f"environment variable {name}={env[name]!r} is not an integer") from None


def resolve_slice(num_shards: int | None, shard_index: int | None,
                 env: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """(index, count) from the options, else from the scheduler's environment:
    Slurm job arrays (``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` of
    ``SLURM_ARRAY_TASK_COUNT``) or Kubernetes indexed jobs (``JOB_COMPLETION_INDEX``, with
    ``--num-shards``). None when neither says anything (one run renders everything)."""
    source = "--shard-index"
    if shard_index is None and "SLURM_ARRAY_TASK_ID" in env:
        shard_index = _int(env, "SLURM_ARRAY_TASK_ID") - (_int(env, "SLURM_ARRAY_TASK_MIN")
                                                          if "SLURM_ARRAY_TASK_MIN" in env else 0)
        source = "SLURM_ARRAY_TASK_ID"
    elif shard_index is None and "JOB_COMPLETION_INDEX" in env:
        shard_index = _int(env, "JOB_COMPLETION_INDEX")
        source = "JOB_COMPLETION_INDEX"
    if num_shards is None and shard_index is not None and "SLURM_ARRAY_TASK_COUNT" in env:
        num_shards = _int(env, "SLURM_ARRAY_TASK_COUNT")
    if shard_index is None and num_shards is None:
        return None
    if num_shards is None:
        raise CmaError(f"{source} gives slice {shard_index}, but not how many slices: pass --num-shards N")
    if shard_index is None:
        raise CmaError("--num-shards needs --shard-index I (or SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX)")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise CmaError(f"slice {shard_index} of {num_shards} (from {source}): expected 0 <= index < count")
    return (shard_index, num_shards) if num_shards > 1 else None
