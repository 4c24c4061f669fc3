"""Every command of both CLIs with a table of bad inputs: each ends with exit code 2, one line on
stderr, no traceback, and the watched folders unchanged (hashed before and after). Nothing here
renders or trains: every case must fail before the work starts. Runs in-process (click's
CliRunner), so the whole table takes seconds; new commands join the table when they are added."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import zarr
from click.testing import CliRunner

from conftest import index_rows

from cma_builder.cli import cli as cma_build
from pcssl_train.cli import cli as pcssl_train
from pcssl_train.engine.config import load_config
from pcssl_train.engine.trainer import pretrain
from pcssl_train.export import export_encoder

CLIS = {"cma-build": cma_build, "pcssl-train": pcssl_train}


@pytest.fixture(scope="module")
def world(rendered, synth_tree, tmp_path_factory):
    """Placeholders of the table: real inputs (a dataset, a tree, a finished tiny run) and broken ones."""
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    pretrain(load_config("point-mae", "point-mae-tiny", ("optim.epochs=1", "train.tensorboard=false")), rendered, run,
             progress=False)
    trunc = root / "truncated-run"
    shutil.copytree(run, trunc)
    ckpt = trunc / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    (root / "file.txt").write_text("not what you want\n")
    (root / "bad.yaml").write_text("optim: [unclosed\n")
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "folder").mkdir()
    (root / "folder" / "something.txt").write_text("x")
    (root / "poses.json").write_text("{not json")
    damaged = damaged_datasets(rendered, root)
    outside = root / "outside"  # where a link inside an output folder points: must stay empty
    outside.mkdir()
    links = linked_outputs(rendered, run, root, outside)
    return {"DS": str(rendered), "TREE": str(synth_tree), "RUN": str(run), "TRUNC": str(trunc),
            "CKPT": str(run / "checkpoints" / "last.pt"), "TRUNC_CKPT": str(ckpt), "FILE": str(root / "file.txt"),
            "BADYAML": str(root / "bad.yaml"), "LISTYAML": str(root / "list.yaml"), "DIR": str(root / "folder"),
            "BADJSON": str(root / "poses.json"), "DS_FILE": str(rendered / "view.rrd"), "NOPE": str(root / "does-not-exist"), "OUT": str(root / "out"),
            **damaged, **links, "_watch": [rendered, synth_tree, root], "_outside": outside}


ESCAPE_M, ESCAPE_S = "../../../../../../escape-m", "../../../../../../escape-s"


def edit_index(ds: Path, edit) -> None:
    with open(ds / "index.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    edit(rows)
    with open(ds / "index.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(rows)


def damaged_datasets(rendered: Path, root: Path) -> dict[str, str]:
    """Copies of the real render, each damaged one way (datasets travel; someone else made these)."""
    made = {}

    def copy(name: str) -> Path:
        ds = root / name.lower()
        shutil.copytree(rendered, ds)
        made[name] = str(ds)
        return ds

    def crafted(rows):
        rows[0]["model_id"], rows[1]["synset_id"] = ESCAPE_M, ESCAPE_S

    def train_shard(ds: Path) -> Path:  # a shard every command here reads (train: pretrain and eval too)
        return ds / "shards" / next(r["shard"] for r in index_rows(ds) if r["split"] == "train")

    edit_index(copy("CRAFTED"), crafted)                      # index ids that climb out of any folder
    edit_index(copy("CRAFTED_CAT"), lambda rows: rows[2].update(category="../../escape-c"))
    edit_index(copy("MISMATCH"), lambda rows: next(r for r in rows if r["split"] == "train").update(
        model_id="0123456789abcdef"))                        # a safe id, but not the one the shard stores
    ds = copy("NOARRAY")                                      # a shard lost an array
    shutil.rmtree(train_shard(ds) / "fused_points")
    ds = copy("BADSHAPE")                                     # an array disagrees with its neighbours
    group = zarr.open_group(train_shard(ds), mode="r+", use_consolidated=False)
    n = group["K"].shape[0]
    del group["view_foreground"]
    group.create_array("view_foreground", shape=(n - 1, 4), dtype="int32")
    ds = copy("NOSHARD")                                      # an index row points at a shard that is gone
    shutil.rmtree(train_shard(ds))
    ds = copy("LOGCRAFT")                                     # a run log (merge rebuilds the index from logs)
    log = sorted((ds / "log").glob("*.jsonl"))[0]
    rec = json.loads(log.read_text().splitlines()[0])
    log.write_text(log.read_text() + json.dumps(dict(rec, status="failed", model_id=ESCAPE_M)) + "\n")
    return made


def linked_outputs(rendered: Path, run: Path, root: Path, outside: Path) -> dict[str, str]:
    """Output folders of earlier, real runs in which a link points outside (to ``outside``)."""
    export_dir = root / "linked-export"
    assert CliRunner().invoke(cma_build, ["export", str(rendered), "--format", "ply", "--out", str(export_dir),
                                          "--limit", "1"]).exit_code == 0
    row = index_rows(rendered)[-1]  # not the exported one: its category folder does not exist yet
    (export_dir / row["synset_id"]).symlink_to(outside, target_is_directory=True)
    preview_dir = root / "linked-preview"
    preview_dir.mkdir()
    (preview_dir / "grid.png").symlink_to(outside / "grid.png")
    linked_run = root / "linked-run"
    shutil.copytree(run, linked_run)
    (linked_run / "metrics.csv").unlink()
    (linked_run / "metrics.csv").symlink_to(outside / "metrics.csv")
    bench = root / "linked-bench"
    bench.mkdir()
    (bench / "runs").symlink_to(outside, target_is_directory=True)
    labelled = root / "labelled.pt"  # an encoder export whose method label climbs out of the folder
    export_encoder(run, root / "encoder.pt")
    torch.save(dict(torch.load(root / "encoder.pt", weights_only=True), method="../../escape-label"), labelled)
    return {"LINKED_EXPORT": str(export_dir), "LINKED_PREVIEW": str(preview_dir), "LINKED_RUN": str(linked_run),
            "LINKED_BENCH": str(bench), "LABELLED": str(labelled)}


B, P = "cma-build", "pcssl-train"
CASES = [
    # --- cma-build scan
    (B, "scan --shapenet NOPE --out OUT/m.csv", "NOPE"),
    (B, "scan --shapenet FILE --out OUT/m.csv", ""),
    (B, "scan --shapenet DIR --out OUT/m.csv", ""),
    (B, "scan --shapenet TREE --out OUT/m.csv --workers 0", "--workers"),
    (B, "scan --shapenet TREE --out OUT/m.csv --workers -4", "--workers"),
    (B, "scan --shapenet TREE --out OUT/m.csv --limit 0", "--limit"),
    (B, "scan --shapenet TREE --out OUT/m.csv --categories notacategory", "notacategory"),
    (B, "scan --shapenet TREE --out /proc/m.csv", "/proc/m.csv"),
    (B, "scan --shapenet TREE --out DIR", ""),
    # --- cma-build synth
    (B, "synth --out FILE", ""),
    (B, "synth --out OUT/t --per-category 0", "--per-category"),
    (B, "synth --out OUT/t --categories notacategory", "notacategory"),
    (B, "synth --out /proc/t", "/proc/t"),
    # --- cma-build render (all fail before a worker starts)
    (B, "render --shapenet NOPE --out OUT/d", "NOPE"),
    (B, "render --shapenet TREE --out FILE", "is a file"),
    (B, "render --shapenet TREE --out /proc/d", "/proc/d"),
    (B, "render --shapenet TREE --out DIR", "not a cma-build dataset"),
    (B, "render --shapenet TREE --out OUT/d --max-rss-mb 0", "--max-rss-mb"),
    (B, "render --shapenet TREE --out OUT/d --views 0", "--views"),
    (B, "render --shapenet TREE --out OUT/d --resolution 0", "--resolution"),
    (B, "render --shapenet TREE --out OUT/d --samples 0", "--samples"),
    (B, "render --shapenet TREE --out OUT/d --workers 0", "--workers"),
    (B, "render --shapenet TREE --out OUT/d --shard-size 0", "--shard-size"),
    (B, "render --shapenet TREE --out OUT/d --timeout 0", "--timeout"),
    (B, "render --shapenet TREE --out OUT/d --fov 0", "--fov"),
    (B, "render --shapenet TREE --out OUT/d --view-points 0", "--view-points"),
    (B, "render --shapenet TREE --out OUT/d --elevations abc", "--elevations"),
    (B, "render --shapenet TREE --out OUT/d --viewpoints file", "--viewpoint-file"),
    (B, "render --shapenet TREE --out OUT/d --viewpoints file --viewpoint-file BADJSON", ""),
    (B, "render --shapenet TREE --out OUT/d --config NOPE", ""),
    (B, "render --shapenet TREE --out OUT/d --config BADYAML", ""),
    (B, "render --shapenet TREE --out OUT/d --background nocolor", "nocolor"),
    (B, "render --shapenet TREE --out OUT/d --categories notacategory", "notacategory"),
    (B, "render --shapenet TREE --out OUT/d --split bogus", "bogus"),
    (B, "render --shapenet TREE --out DS --views 3", "other settings"),
    (B, "render --shapenet TREE --out OUT/d --num-shards 2 --shard-index 5", ""),
    # --- cma-build validate / preview / stats / merge / export
    (B, "validate NOPE", "NOPE"),
    (B, "validate FILE", ""),
    (B, "validate DIR", "not a cma-build dataset"),
    (B, "validate DS --workers 0", "--workers"),
    (B, "validate DS --report /proc/x.json", "/proc/x.json"),
    (B, "validate DS --threshold bogus=1", "bogus"),
    (B, "validate DS --threshold images.saturated=abc", "abc"),
    (B, "validate DS --sample 0", "--sample"),
    (B, "validate DS --shapenet NOPE", "NOPE"),
    (B, "preview NOPE --out OUT/p", "NOPE"),
    (B, "preview DS --out FILE", ""),
    (B, "preview DS --out OUT/p --n 0", "--n"),
    (B, "preview DS --out OUT/p --max-views 0", "--max-views"),
    (B, "preview DS --out OUT/p --objects nosuch/object", "nosuch"),
    (B, "view NOPE --out OUT/v.rrd", "NOPE"),
    (B, "view DS", "--out FILE.rrd, or --serve"),
    (B, "view DS --out DIR", "is a folder"),
    (B, "view DS --out /proc/v.rrd", "/proc/v.rrd"),
    (B, "view DS --out OUT/v.rrd --objects nosuch/object", "nosuch"),
    (B, "view DS --out OUT/v.rrd --views 0,99", "--views"),
    (B, "view DS --out OUT/v.rrd --views two", "two"),
    (B, "view DS --out OUT/v.rrd --n 0", "--n"),
    (B, "view DS --out OUT/v.rrd --host 0.0.0.0", "--serve"),
    (B, "view DS --out DS_FILE", "inside the dataset"),
    (B, "view DS --serve --host ::1", "IPv4 addresses only"),
    (B, "view DS --serve --host node.example", "expected an IPv4 address"),
    (B, "view DS --serve --web-port 9999 --grpc-port 9999", "two ports"),
    (B, "view DS --serve --web-port 70000", "--web-port"),
    (B, "view DS --out OUT/v.rrd --source NOPE", "NOPE"),
    (B, "view DS --out OUT/v.rrd --source DIR --layout folder", ""),
    (B, "stats NOPE", "NOPE"),
    (B, "stats DIR", "not a cma-build dataset"),
    (B, "stats DS --json /proc/x.json", "/proc/x.json"),
    (B, "merge NOPE", "NOPE"),
    (B, "merge DIR", "not a cma-build dataset"),
    (B, "export DS --format ply --out FILE", "is a file"),
    (B, "export DS --format ply --out DIR", "not a cma-build export"),
    (B, "export DS --format ply --out /proc/x", "/proc/x"),
    (B, "export NOPE --format ply --out OUT/e", "NOPE"),
    (B, "export DS --format ply --out OUT/e --limit 0", "--limit"),
    (B, "export DS --format ply --out OUT/e --points 10", "--points"),
    (B, "export DS --format nerf --out OUT/e --depth-scale -1", "--depth-scale"),
    (B, "export DS --format shapenet55 --out OUT/e --points 100000", "--points"),
    (B, "export DS --format bogus --out OUT/e", "bogus"),
    # --- pcssl-train pretrain
    (P, "pretrain -c point-mae-tiny -d NOPE -o OUT/r", "NOPE"),
    (P, "pretrain -c point-mae-tiny -d DIR -o OUT/r", ""),
    (P, "pretrain -c point-mae-tiny -d FILE -o OUT/r", ""),
    (P, "pretrain -c no-such-config -d DS -o OUT/r", "no-such-config"),
    (P, "pretrain -c BADYAML -d DS -o OUT/r", ""),
    (P, "pretrain -c LISTYAML -d DS -o OUT/r", ""),
    (P, "pretrain -m bogus -d DS -o OUT/r", "bogus"),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --set optim.lr=abc", "optim.lr"),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --set optim.batch_size=0", "optim.batch_size"),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --set optim.epochs=-1", "optim.epochs"),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --set optim.lrr=1", "optim.lrr"),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --set model.width=5", "not divisible"),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --set noequals", "noequals"),
    (P, "pretrain -c point-mae-tiny -d DS -o /proc/run", "/proc/run"),
    (P, "pretrain -c point-mae-tiny -d DS -o /sys/run", "/sys/run"),  # unwritable even for root (read-only stand-in)
    (P, "pretrain -c point-mae-tiny -d DS -o FILE", ""),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --init NOPE", "NOPE"),
    (P, "pretrain -c point-mae-tiny -d DS -o OUT/r --init FILE", ""),
    (P, "pretrain -c point-mae-tiny -d DS -o TRUNC --set optim.epochs=1 --set train.tensorboard=false", ""),
    # --- pcssl-train export
    (P, "export RUN -o /proc/x.pt", "/proc/x.pt"),
    (P, "export TRUNC -o OUT/x.pt", ""),
    (P, "export NOPE -o OUT/x.pt", "NOPE"),
    (P, "export FILE -o OUT/x.pt", ""),
    (P, "export RUN -o OUT/x.pt --format bogus", "bogus"),
    # --- pcssl-train eval
    (P, "eval RUN -p svm -b cma -r DS -o /proc/e.json", "/proc/e.json"),
    (P, "eval NOPE -p svm -b cma -r DS", "NOPE"),
    (P, "eval FILE -p svm -b cma -r DS", ""),
    (P, "eval TRUNC_CKPT -p svm -b cma -r DS", ""),
    (P, "eval RUN -p svm -b modelnet40 -r NOPE", "NOPE"),
    (P, "eval RUN -p svm -b cma -r DIR", ""),
    (P, "eval RUN -p bogus -b cma -r DS", "bogus"),
    (P, "eval RUN -p fewshot -b cma -r DS --ways 0", "--ways"),
    (P, "eval RUN -p fewshot -b cma -r DS --shots 0", "--shots"),
    (P, "eval RUN -p fewshot -b cma -r DS --trials 0", "--trials"),
    (P, "eval RUN -p finetune -b cma -r DS --epochs 0", "--epochs"),
    (P, "eval RUN -p finetune -b cma -r DS --batch-size 0", "--batch-size"),
    (P, "eval RUN -p svm -b cma -r DS --points 0", "--points"),
    (P, "eval RUN -p svm -b modelnet40 -r DIR --svm-protocol recon", "not a ModelNet40 folder"),
    (P, "eval RUN -p svm -b cma -r DS --svm-protocol bogus", "bogus"),
    (P, "eval RUN -p fewshot --folds DIR", "no <way>way_<shot>shot folder"),
    (P, "eval RUN -p fewshot --folds NOPE", "NOPE"),
    (P, "eval RUN -p fewshot --folds DIR -r DIR", "--folds and --root"),
    (P, "report NOPE --modelnet40 DIR -o OUT/r", "NOPE"),
    (P, "report RUN --modelnet40 NOPE -o OUT/r", "NOPE"),
    (P, "report RUN --modelnet40 DIR -o OUT/r", "not a ModelNet40 folder"),
    (P, "report RUN --modelnet40 DIR --folds FILE -o OUT/r", "--folds"),
    (P, "report RUN --modelnet40 DIR -o FILE", "--out"),
    # --- pcssl-train benchmark
    (P, "benchmark -d DS -o /proc/bm", "/proc/bm"),
    (P, "benchmark -d NOPE -o OUT/bm", "NOPE"),
    (P, "benchmark -d DS -o OUT/bm --epochs 0", "--epochs"),
    (P, "benchmark -d DS -o OUT/bm --ways 0", "--ways"),
    (P, "benchmark -d DS -o OUT/bm --shots 0", "--shots"),
    (P, "benchmark -d DS -o OUT/bm --methods bogus", "bogus"),
    (P, "benchmark -d DS -o OUT/bm --ways 40", "--ways"),
    # --- datasets someone else made: crafted or mismatched ids, damaged shards (every command that reads one)
    *[(B, f"export {ds} --format {fmt} --out OUT/e", why) for ds, why in (
        ("CRAFTED", "is not a safe name"), ("MISMATCH", "but the shard stores"), ("NOARRAY", "fused_points is missing"),
        ("BADSHAPE", "view_foreground has shape"), ("NOSHARD", "missing, but index.csv places"))
      for fmt in ("ply", "nerf", "shapenet55 --points 1024", "colmap")],
    *[(B, f"{cmd.replace('X', ds)}", why) for ds, why in (
        ("CRAFTED", "is not a safe name"), ("CRAFTED_CAT", "category"), ("MISMATCH", "but the shard stores"),
        ("NOARRAY", "fused_points is missing"), ("BADSHAPE", "view_foreground has shape"),
        ("NOSHARD", "missing, but index.csv places"))
      for cmd in ("preview X --out OUT/p", "stats X --json OUT/s.json", "view X --out OUT/v.rrd")],
    (B, "merge NOARRAY", "fused_points is missing"),
    (B, "merge BADSHAPE", "view_foreground has shape"),
    (B, "merge NOSHARD", "missing, but index.csv line"),
    (B, "merge LOGCRAFT", "is not a safe name"),
    *[(P, f"pretrain -c point-mae-tiny -d {ds} -o OUT/r", why) for ds, why in (
        ("CRAFTED", "is not a safe name"), ("MISMATCH", "but the shard stores"), ("NOARRAY", "fused_points is missing"),
        ("BADSHAPE", "view_foreground has shape"), ("NOSHARD", "missing, but index.csv places"))],
    *[(P, f"eval RUN -p svm -b cma -r {ds} -o OUT/e.json", why) for ds, why in (
        ("CRAFTED", "is not a safe name"), ("MISMATCH", "but the shard stores"), ("NOARRAY", "fused_points is missing"),
        ("BADSHAPE", "view_foreground has shape"), ("NOSHARD", "missing, but index.csv places"))],
    (P, "benchmark -d CRAFTED -o OUT/bm --methods point-mae", "is not a safe name"),
    # --- a link inside an output folder pointing outside it: refused, never written through
    (B, "export DS --format ply --out LINKED_EXPORT", "points outside it"),
    (B, "preview DS --out LINKED_PREVIEW", "points outside it"),
    (P, "pretrain -c point-mae-tiny -d DS -o LINKED_RUN --set optim.epochs=2 --set train.tensorboard=false",
     "points outside it"),
    (P, "benchmark -d DS -o LINKED_BENCH --methods point-mae", "points outside it"),
    (P, "export LABELLED", "is not a safe name"),
]


def tree_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for base in paths:
        for p in sorted(Path(base).rglob("*")):
            h.update(str(p).encode())
            if p.is_file() and not p.name.startswith(".lock"):
                h.update(p.read_bytes())
    return h.hexdigest()


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({(cli, args) for cli, args, _ in CASES}) == len(CASES)
    commands = {(cli, args.split()[0]) for cli, args, _ in CASES}
    for name, group in CLIS.items():  # every command of both CLIs is in the table
        assert {(name, c) for c in group.commands} <= commands | {(B, "synth"), (P, "env")}


@pytest.mark.parametrize("cli, args, expect", CASES, ids=[f"{c} {a}" for c, a, _ in CASES])
def test_bad_input_is_one_line_and_changes_nothing(cli, args, expect, world, tmp_path):
    out = Path(world["OUT"])  # an empty folder for outputs: bad input writes nothing into it
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    words = [world.get(w, w) for w in args.split()]
    words = [w.replace("OUT/", world["OUT"] + "/") for w in words]
    before = tree_hash(world["_watch"])
    result = CliRunner().invoke(CLIS[cli], words, env={"COLUMNS": "200"}, catch_exceptions=True)
    err = result.stderr.strip()
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{cli} {args}: {type(result.exception).__name__}: {result.exception}")
    assert result.exit_code == 2, f"{cli} {args}: exit {result.exit_code}\n{result.stdout}\n{err}"
    assert len(err.splitlines()) == 1, f"{cli} {args}: not one line:\n{err}"
    assert err.startswith("Error: ") and "Traceback" not in err
    assert expect.replace("NOPE", world["NOPE"]) in err, f"{cli} {args}: {err}"
    assert tree_hash(world["_watch"]) == before, f"{cli} {args} changed files"
    assert not any(out.iterdir()), f"{cli} {args} wrote into {out}"
    assert not any(world["_outside"].iterdir()), f"{cli} {args} wrote through a link"
    for folder in [Path.cwd(), *Path(world["OUT"]).parents]:  # where the crafted ids lead
        assert not list(folder.glob("escape-*")), f"{cli} {args} wrote outside --out"
