"""Batch-array slices (--num-shards/--shard-index): deterministic, disjoint, concurrent into one
dataset, merged; the scheduler's environment variables."""

import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import BIN, index_rows, run_cli
from cma_builder.errors import CmaError
from cma_builder.render.slices import resolve_slice, slice_of

TINY = ["--resolution", "32", "--views", "2", "--samples", "1", "--view-points", "32", "--fused-points", "128",
        "--workers", "1", "--shard-size", "2"]


def test_slice_of_is_deterministic_and_balanced():
    ids = [f"{i:032x}" for i in range(3000)]
    counts = Counter(slice_of(m, 7) for m in ids)
    assert set(counts) == set(range(7)) and max(counts.values()) < 1.15 * 3000 / 7
    assert [slice_of(m, 7) for m in ids[:50]] == [slice_of(m, 7) for m in ids[:50]]
    # The assignment is fixed (slices of one dataset may run different releases): values of cabf631.
    assert [slice_of(m, 7) for m in ids[:8]] == [6, 5, 3, 6, 0, 5, 2, 0]


def test_resolve_slice_from_options_and_scheduler_environment():
    assert resolve_slice(None, None, {}) is None
    assert resolve_slice(4, 2, {}) == (2, 4)
    assert resolve_slice(1, 0, {}) is None  # one slice = the whole dataset
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "10"}
    assert resolve_slice(None, None, slurm) == (2, 10)
    assert resolve_slice(None, 3, slurm) == (3, 10)  # the option wins over the array id
    assert resolve_slice(5, None, {"JOB_COMPLETION_INDEX": "4"}) == (4, 5)
    for args, env, message in [((None, None), {"JOB_COMPLETION_INDEX": "4"}, "pass --num-shards"),
                               ((3, None), {}, "needs --shard-index"),
                               ((3, 3), {}, "expected 0 <= index < count"),
                               ((None, None), {"SLURM_ARRAY_TASK_ID": "x"}, "not an integer")]:
        with pytest.raises(CmaError, match=message):
            resolve_slice(*args, env)


def _slice(tree, out, *args, env=None):
    cmd = [str(BIN / "cma-build"), "render", "--shapenet", str(tree), "--out", str(out), "--limit", "12", *TINY, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


def test_concurrent_slices_fill_one_dataset_exactly_once(synth_tree, tmp_path):
    out = tmp_path / "ds"
    array = {"SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"}  # sbatch --array=1-3
    procs = [_slice(synth_tree, out, "--num-shards", "3", "--shard-index", "0"),
             _slice(synth_tree, out, env=dict(array, SLURM_ARRAY_TASK_ID="2")),
             _slice(synth_tree, out, env=dict(array, SLURM_ARRAY_TASK_ID="3"))]
    outputs = [p.communicate(timeout=600) for p in procs]
    for i, (p, (stdout, stderr)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, stdout + stderr
        assert f"Finished (slice {i} of 3): " in stdout
    # The last slice to finish rebuilt the index from disk: it lists every object once.
    rows = index_rows(out)
    keys = [(r["synset_id"], r["model_id"]) for r in rows]
    assert len(keys) == 12 == len(set(keys)) and {r["status"] for r in rows} == {"done"}
    for r in rows:  # and each object was rendered by the slice it belongs to
        assert slice_of(r["model_id"], 3) in range(3)
    rendered = sum(int(o[0].split("Finished (slice ")[1].split(": ")[1].split(" rendered")[0]) for o in outputs)
    assert rendered == 12  # disjoint: no object rendered twice
    proc = run_cli("cma-build", "merge", str(out))
    assert proc.returncode == 0 and "12 done, 0 failed, 0 skipped" in proc.stdout
    proc = run_cli("cma-build", "validate", str(out), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stdout
    # The union of the slices is the unsliced selection: a whole run finds nothing left to do.
    proc = subprocess.run([str(BIN / "cma-build"), "render", "--shapenet", str(synth_tree), "--out", str(out),
                           "--limit", "12", *TINY], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "0 rendered" in proc.stdout and "12 already done" in proc.stdout


def test_a_slice_runs_once_and_excludes_a_whole_dataset_run(synth_tree, tmp_path):
    out = tmp_path / "ds"
    # A slow slice (many samples), interrupted with Ctrl-C once the others have been refused.
    slow = ["--samples", "4000"]
    first = _slice(synth_tree, out, "--num-shards", "2", "--shard-index", "1", *slow)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / ".lock-slice-1-of-2").is_file():
        time.sleep(0.05)
    time.sleep(0.5)
    try:
        again = _slice(synth_tree, out, "--num-shards", "2", "--shard-index", "1", *slow)
        _, err = again.communicate(timeout=120)
        assert again.returncode == 2 and "another cma-build render is writing slice 1 of 2" in err, err
        whole = _slice(synth_tree, out, *slow)
        _, err = whole.communicate(timeout=120)
        assert whole.returncode == 2 and "another cma-build render is writing to this dataset" in err, err
        other = _slice(synth_tree, out, "--num-shards", "2", "--shard-index", "0", "--force", *slow)
        _, err = other.communicate(timeout=120)
        assert other.returncode == 2 and "cannot be combined with --num-shards" in err
    finally:
        first.send_signal(signal.SIGINT)
        stdout, _ = first.communicate(timeout=120)
    assert first.returncode == 130 and "Interrupted (slice 1 of 2)" in stdout
