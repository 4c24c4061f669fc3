"""cma-build render --executor ray on a real local Ray instance: the same bytes as a local run,
retries when an actor dies, failures recorded, joining a running cluster."""

import os
import socket
import subprocess

import numpy as np
import pytest

from conftest import BIN, SMALL, index_rows, load, render, run_cli

pytest.importorskip("ray")
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def test_ray_output_is_identical_to_a_local_run(rendered, synth_tree, tmp_path):
    out = tmp_path / "ds"
    proc = render(synth_tree, out, "--limit", "8", "--normals", "--shard-size", "3", "--executor", "ray", env=RAY_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "8 rendered, 0 failed" in proc.stdout
    local = {r["model_id"]: r for r in index_rows(rendered)}
    rows = index_rows(out)
    assert {r["model_id"] for r in rows} == set(local)
    assert all(r["worker"].startswith("ray-") for r in rows)
    for r in rows:
        a, b = load(out, r), load(rendered, local[r["model_id"]])
        for name in a:
            assert np.array_equal(a[name], b[name]), name  # bit for bit
    check = run_cli("cma-build", "validate", str(out), "--report", str(tmp_path / "r.json"))
    assert check.returncode == 0, check.stdout


def test_ray_retries_objects_whose_actor_died_and_records_the_rest(tree_copy, tmp_path):
    ids = sorted(p.name for p in (tree_copy / "04256520").iterdir()) + sorted(
        p.name for p in (tree_copy / "03001627").iterdir())
    flaky, doomed, segv, hang = ids[0], ids[1], ids[2], ids[3]
    state = tmp_path / "fault-state"
    state.mkdir()
    faults = f"sigkill-once:{flaky},sigkill-mid:{doomed},segfault:{segv},hang:{hang}"
    out = tmp_path / "ds"
    proc = render(tree_copy, out, "--categories", "sofa,chair,airplane,mug", "--executor", "ray", "--timeout", "15",
                  env=dict(RAY_ENV, CMA_FAULTS=faults, CMA_FAULTS_STATE=str(state)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["model_id"]: r for r in index_rows(out)}
    assert len(rows) == 12
    assert rows[flaky]["status"] == "done"  # its actor died once; the retry on a new actor succeeded
    assert (state / f"cma-fault-{flaky}").is_file()
    for mid in (doomed, segv):
        assert rows[mid]["status"] == "failed" and "tried 2 times" in rows[mid]["error"], rows[mid]
    assert rows[hang]["status"] == "failed" and "timed out after 15 s" in rows[hang]["error"]
    assert sum(r["status"] == "done" for r in rows.values()) == 9
    assert "9 rendered, 3 failed" in proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_joins_a_running_cluster(synth_tree, tmp_path):
    """A head started by hand on its own port (not 6379: a local cluster of an earlier test may still
    be shutting down there), found by --ray-address auto."""
    ray_bin = BIN / "ray"
    env = dict(os.environ, **RAY_ENV)
    port = free_port()
    start = subprocess.run([str(ray_bin), "start", "--head", "--port", str(port), "--num-cpus", "4",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, env=env, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        out = tmp_path / "ds"
        assert SMALL[-2] == "--workers"
        small = SMALL[:-2]  # no --workers: one 2-thread actor per 2 cluster CPUs
        proc = subprocess.run([str(BIN / "cma-build"), "render", "--shapenet", str(synth_tree), "--out", str(out),
                               *small, "--limit", "6", "--executor", "ray", "--ray-address", "auto"],
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "6 rendered, 0 failed" in proc.stdout
        assert len({r["worker"].split(" ")[0] for r in index_rows(out)}) == 2  # 4 cluster CPUs, 2 actors
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, timeout=120)
    proc = render(synth_tree, tmp_path / "ds2", "--limit", "1", "--executor", "ray", "--ray-address", "127.0.0.1:1",
                  env=RAY_ENV)
    assert proc.returncode == 2 and "cannot start or reach Ray" in proc.stderr and "Traceback" not in proc.stderr
