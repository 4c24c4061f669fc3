"""Outputs stay as they were: a small real render equals the recorded golden dataset array by array,
and each method's first training losses for a fixed seed equal the recorded ones. Refactors must
keep both; a deliberate change of output re-records them with ``python tests/golden/make_golden.py``
and says why in the commit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from golden.make_golden import HERE, dataset_arrays, plain, render, summarize, train_losses


@pytest.fixture(scope="module")
def golden_render(synth_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "ds"
    render(synth_tree, out)
    return out


def test_every_array_equals_the_golden_render(golden_render):
    want = json.loads((HERE / "render.json").read_text())
    values = np.load(HERE / "render.npz")
    arrays = dataset_arrays(golden_render)
    got = summarize(arrays)
    assert sorted(got) == sorted(want)
    for key, obj in want.items():
        assert sorted(got[key]) == sorted(obj), key
        for name, rec in obj.items():
            g = got[key][name]
            assert (g["dtype"], g["shape"]) == (rec["dtype"], rec["shape"]), (key, name)
            if g["sha256"] != rec["sha256"]:  # show how far off, not only that it is
                a, b = plain(arrays[key][name]), values[f"{key}|{name}"]
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max() if a.dtype.kind in "fiub" else "-"
                pytest.fail(f"{key} {name}: checksum {g['sha256']} != golden {rec['sha256']} (max |diff| {diff})")


def test_training_losses_equal_the_golden_ones(golden_render, tmp_path):
    want = json.loads((HERE / "losses.json").read_text())
    got = train_losses(golden_render, tmp_path)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-5), name
