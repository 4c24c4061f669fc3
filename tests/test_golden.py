"""Outputs stay as they were: tests/golden/dataset is a small real render recorded before the
issue-21 refactor, and tests/golden/losses.json each method's fixed-seed losses trained on it.
A deliberate change of output re-records both with ``python tests/golden/make_golden.py`` and
says why in the commit.

Each check is as strict as the machine allows. Cycles' CPU kernels round depth differently by
instruction set (1 ulp between AVX2 and AVX-512 machines), and that moves farthest point
sampling's choices, so a fresh render is compared with the golden within float rounding, and the
derived arrays (points, pixels, visibility) are checked bit for bit from the golden's own images.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from golden.make_golden import (GOLDEN, HERE, copy_dataset, dataset_arrays, dataset_attrs, index_rows,
                                render, train_losses)

CAMERA = ("K", "world_to_cam", "blender_matrix_world", "bounding_sphere", "diagonal")
IMAGES = ("rgb", "depth", "mask", "normal")
DERIVED = ("view_points", "view_pixels", "view_point_count", "view_foreground", "fused_points", "fused_origin",
           "fused_point_count", "fused_pixels", "fused_visible")
RUN_COLUMNS = {"seconds_setup", "seconds_render", "seconds_decode", "seconds_raycast", "seconds_backproject",
               "seconds_write", "seconds_total", "worker", "worker_rss_mb", "obj_path", "finished_at", "shard"}


@pytest.fixture(scope="module")
def golden():
    return dataset_arrays(GOLDEN)


@pytest.fixture(scope="module")
def fresh(synth_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "ds"
    render(synth_tree, out)
    return out


def test_point_maps_of_the_golden_images_equal_the_golden_arrays(golden, synth_tree):
    """Back-projection, FPS and visibility, run on the golden's depth, mask and cameras, give its
    derived arrays bit for bit (no Blender: the same on any CPU)."""
    from cma_builder.geometry.pointmaps import point_maps
    from cma_builder.geometry.raycast import MeshRaycaster

    settings = dataset_attrs(GOLDEN)["settings"]
    for key, a in golden.items():
        mesh = MeshRaycaster.from_obj(str(synth_tree / key / "models" / "model_normalized.obj"))
        got = point_maps(a["depth"], a["mask"], a["K"], a["world_to_cam"], settings["view_points"],
                         settings["fused_points"], mesh.first_hit, settings["visibility_tolerance"] * float(a["diagonal"]))
        assert sorted(got) == sorted(DERIVED)
        for name in DERIVED:
            assert got[name].dtype == a[name].dtype and got[name].shape == a[name].shape, (key, name)
            assert np.array_equal(got[name], a[name]), f"{key} {name}: {_how_far(got[name], a[name])}"


def test_a_fresh_render_equals_the_golden_within_float_rounding(golden, fresh):
    got = dataset_arrays(fresh)
    assert sorted(got) == sorted(golden)
    assert dataset_attrs(fresh)["settings"] == dataset_attrs(GOLDEN)["settings"]
    for key, want in golden.items():
        a = got[key]
        assert sorted(a) == sorted(want), key
        for name in want:
            assert (a[name].dtype, a[name].shape) == (want[name].dtype, want[name].shape), (key, name)
        for name in set(want) - set(CAMERA) - set(IMAGES) - set(DERIVED):  # ids, label, split
            assert np.array_equal(a[name], want[name]), (key, name)
        for name in CAMERA:
            np.testing.assert_allclose(a[name], want[name], rtol=1e-12, atol=1e-12, err_msg=f"{key} {name}")
        assert np.array_equal(a["mask"], want["mask"]), key
        np.testing.assert_allclose(a["depth"], want["depth"], rtol=1e-6, atol=0, err_msg=key)
        assert np.abs(a["rgb"].astype(int) - want["rgb"]).max() <= 1, key
        assert np.abs(a["normal"].astype(np.float32) - want["normal"]).max() <= 1e-3, key
        if all(np.array_equal(a[n], want[n]) for n in IMAGES):  # same rounding as the recording machine
            for name in DERIVED:
                assert np.array_equal(a[name], want[name]), f"{key} {name}: {_how_far(a[name], want[name])}"


def test_the_fresh_index_equals_the_golden_index(fresh):
    strip = lambda rows: [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in rows]  # noqa: E731
    assert strip(index_rows(fresh)) == strip(index_rows(GOLDEN))
    with open(fresh / "index.csv", newline="") as fh:
        assert list(csv.DictReader(fh).fieldnames) == list(csv.DictReader(open(GOLDEN / "index.csv")).fieldnames)


LOSS_REL = 2e-3


def test_training_losses_on_the_golden_dataset_equal_the_golden_ones(tmp_path):
    """Within rel LOSS_REL on any x86 CPU. Which kernels torch, oneDNN and MKL pick (instruction set,
    vendor, thread count) changes the rounding, and 2 epochs amplify it; measured against the
    recording (an AVX-512 machine): at most 6.2e-5 with AVX-512 or AVX2 kernels (another AVX-512
    machine, and ATEN_CPU_CAPABILITY=avx2 with ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2),
    1 to 16 threads; 8.3e-4 with torch's scalar 'default' kernels. A change to what is trained moves
    them far more: another train.seed 5-40 %, a 10 % larger learning rate mm-point's second loss
    2.1e-3. (Until 2026-12 this was 1e-5 when torch reported the recording's instruction set: it
    failed on another AVX-512 machine, mm-point off by 6.2e-5.)"""
    import json

    want = json.loads((HERE / "losses.json").read_text())["losses"]
    got = train_losses(copy_dataset(GOLDEN, tmp_path / "golden"), tmp_path)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=LOSS_REL), name


def _how_far(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return f"{int((d > 0).sum())} of {d.size} values differ, at most by {d.max()}"
