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
    assert proc.stderr.strip() == "Error: No such option '--bogus'. Did you mean '--out'? (see 'cma-build scan --help')"


@pytest.mark.parametrize("args, message", [
    (["scan", "--shapenet", ".", "--bogus"], "No such option '--bogus'"),
    (["scan", "--shapenet", ".", "--workers", "abc"], "Invalid value for '--workers': 'abc' is not a valid integer"),
    (["scan"], "give the collection as --source PATH (or --shapenet PATH"),
    (["render", "--shapenet", ".", "--out", "o", "--fov", "wide"], "'wide' is not a valid float"),
    (["render", "--shapenet", ".", "--out", "o", "--device", "tpu"], "Invalid value for '--device'"),
    (["--bogus"], "No such option '--bogus'. (see 'cma-build --help')"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_usage_errors_are_one_line(args, message, tmp_path):
    """click prints usage errors on four lines (Usage, hint, blank, Error); cma-build on one."""
    proc = run_cli("cma-build", *args, cwd=tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("Error: "), err
    assert message in err and "Traceback" not in err and "--help" in err
    assert not any(tmp_path.iterdir())


def test_bare_command_still_prints_the_help():
    proc = run_cli("cma-build")
    assert proc.returncode == 2 and "Commands:" in proc.stderr  # click's no_args_is_help, unchanged


# (command and arguments, the bad option and value, the one line it must give): the arguments name
# paths that do not exist, so each case also proves the number is refused before anything is opened.
IMPOSSIBLE_NUMBERS = [
    ("scan --shapenet T", "--workers 0", "--workers must be at least 1, got 0"),
    ("scan --shapenet T", "--workers -4", "--workers must be at least 1, got -4"),
    ("scan --shapenet T", "--workers 100000", "--workers 100000: more than 4 processes per CPU"),
    ("scan --shapenet T", "--limit 0", "--limit must be at least 1, got 0"),
    ("scan --shapenet T", "--limit -1", "--limit must be at least 1, got -1"),
    ("synth --out O", "--per-category 0", "--per-category must be at least 1, got 0"),
    ("synth --out O", "--seed -1", "--seed must be at least 0, got -1"),
    ("render --shapenet T --out O", "--limit 0", "--limit must be at least 1, got 0"),
    ("render --shapenet T --out O", "--views 0", "--views must be between 1 and 4096, got 0"),
    ("render --shapenet T --out O", "--views 100000", "--views must be between 1 and 4096, got 100000"),
    ("render --shapenet T --out O", "--resolution 0", "--resolution must be between 8 and 8192, got 0"),
    ("render --shapenet T --out O", "--resolution 100000", "--resolution must be between 8 and 8192, got 100000"),
    ("render --shapenet T --out O", "--fov 0", "--fov must be in (0, 170) degrees, got 0"),
    ("render --shapenet T --out O", "--fov 180", "--fov must be in (0, 170) degrees, got 180"),
    ("render --shapenet T --out O", "--fov nan", "--fov must be a finite number, got nan"),
    ("render --shapenet T --out O", "--distance 0", "--distance must be positive, got 0"),
    ("render --shapenet T --out O", "--distance -2", "--distance must be positive, got -2"),
    ("render --shapenet T --out O", "--distance inf", "--distance must be a finite number, got inf"),
    ("render --shapenet T --out O", "--samples 0", "--samples must be between 1 and 16777216, got 0"),
    ("render --shapenet T --out O", "--view-points 0", "--view-points must be at least 1, got 0"),
    ("render --shapenet T --out O", "--fused-points 0", "--fused-points must be at least 1, got 0"),
    ("render --shapenet T --out O", "--visibility-tolerance -1e-4", "--visibility-tolerance must be positive"),
    ("render --shapenet T --out O", "--visibility-tolerance 0", "--visibility-tolerance must be positive, got 0"),
    ("render --shapenet T --out O", "--workers 0", "--workers must be at least 1, got 0"),
    ("render --shapenet T --out O", "--workers 100000", "--workers 100000: more than 4 processes per CPU"),
    ("render --shapenet T --out O", "--timeout 0", "--timeout must be positive, got 0"),
    ("render --shapenet T --out O", "--timeout nan", "--timeout must be a finite number, got nan"),
    ("render --shapenet T --out O", "--recycle-after 0", "--recycle-after must be at least 1, got 0"),
    ("render --shapenet T --out O", "--max-rss-mb 0", "--max-rss-mb must be at least 1, got 0"),
    ("render --shapenet T --out O", "--shard-size 0", "--shard-size must be at least 1, got 0"),
    ("render --shapenet T --out O", "--num-shards 0", "--num-shards must be at least 1, got 0"),
    ("render --shapenet T --out O", "--num-shards 2 --shard-index -1", "--shard-index must be at least 0, got -1"),
    ("render --shapenet T --out O", "--elevations 95", "each elevation must be between -90 and 90 degrees"),
    ("render --shapenet T --out O", "--elevations 0,nan", "each elevation must be between -90 and 90 degrees"),
    ("validate D", "--workers 0", "--workers must be at least 1, got 0"),
    ("validate D", "--workers 100000", "--workers 100000: more than 4 processes per CPU"),
    ("validate D", "--sample 0", "--sample must be at least 1, got 0"),
    ("validate D", "--seed -1", "--seed must be at least 0, got -1"),
    ("validate D", "--threshold mapping.pixel_error=-1", "the limit must be a finite number >= 0"),
    ("validate D", "--threshold mapping.pixel_error=nan", "the limit must be a finite number >= 0"),
    ("validate D", "--threshold geometry.raycast_iou=inf", "the limit must be a finite number >= 0"),
    ("preview D --out O", "--n 0", "--n must be at least 1, got 0"),
    ("preview D --out O", "--seed -1", "--seed must be at least 0, got -1"),
    ("preview D --out O", "--max-views 0", "--max-views must be at least 1, got 0"),
    ("export D --format ply --out O", "--limit 0", "--limit must be at least 1, got 0"),
    ("export D --format shapenet55 --out O", "--points 0", "--points must be at least 1, got 0"),
]


@pytest.mark.parametrize("command, bad, message", IMPOSSIBLE_NUMBERS, ids=[f"{c.split()[0]} {b}"
                                                                           for c, b, _ in IMPOSSIBLE_NUMBERS])
def test_impossible_numbers_are_refused_up_front(command, bad, message, tmp_path):
    """In-process (fast): one line, exit 2, before any path is looked at, and nothing written."""
    from click.testing import CliRunner

    from cma_builder.cli import cli

    names = {"T": tmp_path / "tree", "O": tmp_path / "out", "D": tmp_path / "ds"}
    words = [str(names.get(w, w)) for w in command.split()] + bad.split()
    result = CliRunner().invoke(cli, words)
    err = result.stderr.strip()
    assert result.exit_code == 2 and len(err.splitlines()) == 1 and err.startswith("Error: "), (words, err)
    assert message in err and "Traceback" not in err, err
    assert not any(tmp_path.iterdir())


def test_numbers_from_a_config_file_are_checked_too(tmp_path):
    config = tmp_path / "render.yaml"
    config.write_text("views: 0\n")
    proc = run_cli("cma-build", "render", "--config", str(config), "--shapenet", str(tmp_path / "t"),
                   "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.strip() == "Error: --views must be between 1 and 4096, got 0"


def test_make_demo_prints_the_category_counts(tmp_path):
    """The README's first command, into a temporary output folder (the venv is already installed)."""
    env = dict(os.environ, MAKEFLAGS="")
    proc = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO={tmp_path}/demo", "DEMO_PER_CATEGORY=2"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("airplane", "bottle", "car", "chair", "lamp", "mug", "sofa", "table"):
        assert name in proc.stdout
    assert "total     8 categories        16" in proc.stdout
    assert (tmp_path / "demo" / "manifest.csv").is_file()
    assert "Finished: 16 rendered, 0 failed" in proc.stdout
    assert f"Dataset: {tmp_path}/demo/dataset" in proc.stdout and (tmp_path / "demo" / "dataset" / "index.csv").is_file()
    assert "PASSED: every check within its limit on 16 objects" in proc.stdout
    assert proc.stdout.rstrip().endswith(f"{tmp_path}/demo/preview/grid.png")  # ends with the PNG paths
    sheets = [line.strip() for line in proc.stdout.splitlines() if line.strip().endswith(".png")]
    assert len(sheets) == 9 and all(os.path.isfile(p) for p in sheets)
