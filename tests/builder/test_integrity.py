"""Datasets and output folders others made are untrusted: ids must be safe names that agree with
the shards, every shard read must be whole, nothing is written through a link leading out of an
output folder, and dead renders' scratch goes at the next render or merge. In-process, on copies of
the golden dataset (a real render); the command-by-command table is tests/test_bad_inputs.py."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from cma_builder.cli import cli as cma_build
from cma_builder.errors import CmaError
from cma_builder.format import DatasetReader, Dataset
from cma_builder.format.merge import merge
from cma_builder.paths import check_name, inside, name_problem
from cma_builder.render.scratch import WORKER_PREFIX, _start_time, scratch_parent
from cma_builder.render.settings import RenderSettings
from golden.make_golden import RENDER_ARGS


def edit_index(ds: Path, **changes) -> dict:
    """Set ``changes`` on the first index row; returns the row as it was."""
    with open(ds / "index.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    before = dict(rows[0])
    rows[0].update(changes)
    with open(ds / "index.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(rows)
    return before


@pytest.mark.parametrize("name", ["02691156", "1a6f615e8b1b5ae4dbbc9440457e303e", "airplane_0627", "cellular telephone",
                                  "chaise-longue+2", "ünïcödé", "a.b", "-x", "x" * 200])
def test_safe_names(name):
    assert name_problem(name) is None and check_name(name, "id") == name


@pytest.mark.parametrize("name, why", [
    ("", "empty"), (".", "dot"), ("..", "dot"), ("../escape", "'/'"), ("a/b", "'/'"), ("/abs", "'/'"),
    ("a\\b", "'\\\\'"), ("a\x00b", "'\\x00'"), ("line\nbreak", "'\\n'"), (".hidden", "dot"), ("x" * 201, "longer"),
    ("é" * 101, "longer"), (None, "not text"), (3, "not text"),
])
def test_unsafe_names(name, why):
    assert why in name_problem(name)
    with pytest.raises(CmaError, match="is not a safe name"):
        check_name(name, "model_id")


def test_inside_refuses_dotdot_absolute_and_links_out(tmp_path):
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    assert inside(root, "a/b.ply") == root / "a" / "b.ply"  # nothing needs to exist yet
    for rel in ("../x", "a/../../x", "/etc/passwd"):
        with pytest.raises(CmaError, match="leads outside"):
            inside(root, rel)
    (root / "cat").symlink_to(elsewhere, target_is_directory=True)  # a folder link
    (root / "grid.png").symlink_to(elsewhere / "grid.png")          # a dangling file link
    (root / "sub").mkdir()
    (root / "here").symlink_to(root / "sub", target_is_directory=True)  # a link that stays inside: fine
    for rel in ("cat/m.ply", "grid.png"):
        with pytest.raises(CmaError, match="points outside it"):
            inside(root, rel)
    assert inside(root, "here/m.ply") == root / "here" / "m.ply"
    assert not any(elsewhere.iterdir())


def test_index_rows_refuse_unsafe_ids_and_places(golden_copy):
    for column, value, match in [("model_id", "../../../escape-m", "model_id '../../../escape-m' is not a safe name"),
                                 ("synset_id", "..", "synset_id '..' is not a safe name"),
                                 ("category", "../c", "category '../c'"), ("shard", "../x", "shard '../x'"),
                                 ("row", "-1", "row '-1' is not a row number"), ("row", "1e3", "row .1e3. is not a row number")]:
        before = edit_index(golden_copy, **{column: value})
        with pytest.raises(CmaError, match=f"index.csv line 2: {match}"):
            DatasetReader.open(golden_copy).index_rows()
        edit_index(golden_copy, **{column: before[column]})
    assert len(DatasetReader.open(golden_copy).index_rows()) == 4


def test_verify_finds_each_kind_of_damage(golden_copy):
    reader = DatasetReader.open(golden_copy)
    objs = reader.objects()
    reader.verify(objs, reader.shard_names())  # the golden dataset is whole
    shard = golden_copy / "shards" / objs[0].shard

    edit_index(golden_copy, model_id="0123456789abcdef")
    with pytest.raises(CmaError, match=f"{shard}: index.csv places 02691156/0123456789abcdef at row 0, but the shard "
                                       f"stores {objs[0].key} there"):
        fresh(golden_copy).verify(fresh(golden_copy).objects())
    edit_index(golden_copy, model_id=objs[0].model_id, row="7")
    with pytest.raises(CmaError, match="at row 7, but the shard holds 3 objects"):
        fresh(golden_copy).verify(fresh(golden_copy).objects())
    edit_index(golden_copy, row="0")

    group = zarr.open_group(shard, mode="r+", use_consolidated=False)
    fg = group["view_foreground"][:]
    del group["view_foreground"]
    group.create_array("view_foreground", shape=(2, 4), dtype="int32")  # 2 objects where its neighbours hold 3
    with pytest.raises(CmaError, match=r"view_foreground has shape \(2, 4\), expected \(3, 4\)"):
        fresh(golden_copy).verify(fresh(golden_copy).objects())
    del group["view_foreground"]
    group.create_array("view_foreground", shape=(3, 4), dtype="int64")[:] = fg
    with pytest.raises(CmaError, match="view_foreground has dtype int64, expected int32"):
        fresh(golden_copy).verify(fresh(golden_copy).objects())
    del group["view_foreground"]
    with pytest.raises(CmaError, match="array view_foreground is missing; the dataset is damaged"):
        fresh(golden_copy).verify(fresh(golden_copy).objects())
    shutil.rmtree(shard)
    with pytest.raises(CmaError, match=f"{shard}: missing, but index.csv places {objs[0].key} and 2 more in it"):
        fresh(golden_copy).verify(fresh(golden_copy).objects())


def test_a_shard_storing_unsafe_ids_is_damaged(golden_copy):
    reader = DatasetReader.open(golden_copy)
    shard = reader.objects()[0].shard
    group = zarr.open_group(golden_copy / "shards" / shard, mode="r+", use_consolidated=False)
    ids = group["model_id"][:]
    ids[1] = "../escape"
    group["model_id"][:] = ids
    with pytest.raises(CmaError, match="stores model_id '../escape' at row 1, not a safe name"):
        fresh(golden_copy).stored_keys(shard)


def fresh(ds: Path) -> DatasetReader:
    return DatasetReader.open(ds)


def test_merge_rebuilds_a_wrong_index_but_refuses_what_it_cannot_trust(golden_copy):
    want = (golden_copy / "index.csv").read_text()
    edit_index(golden_copy, model_id="0123456789abcdef")  # an index that is not the shards': merge's job
    result = merge(golden_copy)
    assert result.counts["done"] == 4 and result.shards == 2
    assert "0123456789abcdef" not in (golden_copy / "index.csv").read_text()
    assert len((golden_copy / "index.csv").read_text().splitlines()) == len(want.splitlines())

    shard = golden_copy / "shards" / DatasetReader.open(golden_copy).objects()[0].shard
    meta = json.loads((shard / "zarr.json").read_text())
    objects = meta["attributes"]["objects"]
    objects[0], objects[1] = dict(objects[1], row=0), dict(objects[0], row=1)  # records of swapped rows
    (shard / "zarr.json").write_text(json.dumps(meta))
    index_before = (golden_copy / "index.csv").read_bytes()
    with pytest.raises(CmaError, match="its attributes place .* at row 0, but the shard stores .* at row 0"):
        merge(golden_copy)
    assert (golden_copy / "index.csv").read_bytes() == index_before


def test_run_logs_with_unsafe_ids_are_refused_and_a_lost_shard_only_by_merge(golden_copy):
    ds = Dataset(golden_copy, RenderSettings.from_dict(DatasetReader.open(golden_copy).attrs["settings"]))
    (golden_copy / "log").mkdir()
    log = golden_copy / "log" / "run.jsonl"
    done = {"synset_id": "02691156", "model_id": "ffff", "status": "done", "shard": "gone", "row": 0}
    log.write_text(json.dumps(done) + "\n")
    assert ("02691156", "ffff") not in ds.state().records  # render: rendered again
    with pytest.raises(CmaError, match="shards/gone: missing, but the run log says 02691156/ffff was written to it"):
        ds.state(strict=True)
    with pytest.raises(CmaError, match="shards/gone: missing"):
        merge(golden_copy)
    log.write_text(json.dumps(dict(done, status="failed", model_id="../../x")) + "\n")
    with pytest.raises(CmaError, match=r"run.jsonl line 1: model_id '../../x' is not a safe name"):
        ds.state()


def test_preview_and_stats_write_nothing_for_a_damaged_copy(golden_copy, tmp_path):
    shutil.rmtree(golden_copy / "shards" / DatasetReader.open(golden_copy).objects()[0].shard / "fused_points")
    for args in (["preview", str(golden_copy), "--out", str(tmp_path / "p")],
                 ["stats", str(golden_copy), "--json", str(tmp_path / "s.json")],
                 ["export", str(golden_copy), "--format", "ply", "--out", str(tmp_path / "e")]):
        result = CliRunner().invoke(cma_build, args)
        assert result.exit_code == 2 and "fused_points is missing" in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_dead_scratch_goes_at_the_next_merge_and_the_next_render_with_nothing_to_do(golden_copy, synth_tree):
    parent = scratch_parent()
    dead_pid = next(p for p in range(4_000_000, 1, -1) if not Path(f"/proc/{p}").exists())
    me = os.getpid()

    def make(pid, start, tag):
        d = parent / f"{WORKER_PREFIX}{pid}-{start}-{tag}"
        (d / "worker-1").mkdir(parents=True)
        return d

    for command in (["merge", str(golden_copy)],
                    ["render", "--shapenet", str(synth_tree), "--out", str(golden_copy), *RENDER_ARGS]):
        dead, alive = make(dead_pid, 12345, "dead"), make(me, _start_time(me), "alive")
        try:
            result = CliRunner().invoke(cma_build, command)
            assert result.exit_code == 0, result.output
            assert not dead.exists(), f"{command[0]} left a dead run's scratch"
            assert alive.exists(), f"{command[0]} removed a live run's scratch"
        finally:
            shutil.rmtree(dead, ignore_errors=True)
            shutil.rmtree(alive, ignore_errors=True)
    assert "0 rendered, 0 failed, 0 skipped (unusable file), 4 already done" in result.output  # it had nothing to do
