"""The installed console scripts: help with examples, versions, the environment report, make demo."""

import os
import subprocess

import pytest

from conftest import REPO, run_cli


@pytest.mark.parametrize("args", [("cma-build",), ("cma-build", "scan"), ("cma-build", "synth"), ("cma-build", "render"),
                                  ("cma-build", "validate"), ("cma-build", "preview"), ("cma-build", "stats"), ("cma-build", "merge"),
                                  ("pcssl-train",), ("pcssl-train", "env")])
def test_every_command_has_help_with_an_example(args):
    proc = run_cli(*args, "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout


def test_version_and_env_report():
    assert run_cli("cma-build", "--version").stdout.startswith("cma-build, version ")
    proc = run_cli("pcssl-train", "env")
    assert proc.returncode == 0 and proc.stdout.startswith("torch 2.13.0")
    assert "pytorch3d" in proc.stdout


def test_unknown_option_is_a_usage_error_without_traceback():
    proc = run_cli("cma-build", "scan", "--shapenet", ".", "--bogus")
    assert proc.returncode == 2 and "No such option" in proc.stderr and "Traceback" not in proc.stderr


def test_make_demo_prints_the_category_counts(tmp_path):
    """The README's first command, into a temporary output folder (the venv is already installed)."""
    env = dict(os.environ, MAKEFLAGS="")
    proc = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO={tmp_path}/demo", "DEMO_PER_CATEGORY=2"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("airplane", "bottle", "car", "chair", "lamp", "mug", "sofa", "table"):
        assert name in proc.stdout
    assert "total     8 categories       16" in proc.stdout
    assert (tmp_path / "demo" / "manifest.csv").is_file()
    assert "Finished: 16 rendered, 0 failed" in proc.stdout
    assert f"Dataset: {tmp_path}/demo/dataset" in proc.stdout and (tmp_path / "demo" / "dataset" / "index.csv").is_file()
    assert "PASSED: every check within its limit on 16 objects" in proc.stdout
    assert proc.stdout.rstrip().endswith(f"{tmp_path}/demo/preview/grid.png")  # ends with the PNG paths
    sheets = [line.strip() for line in proc.stdout.splitlines() if line.strip().endswith(".png")]
    assert len(sheets) == 9 and all(os.path.isfile(p) for p in sheets)
