"""Installs that fit the node: pcssl-train and the dataset reader run with Blender, open3d, numba,
Ray and Rerun unimportable (as after ``pip install 'cma-toolkit[train]'``), and the commands that need
an extra say which one in one line. Store-level interop: xarray and dask open the shards."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import zarr

from conftest import REPO, index_rows

BLOCKED = ("bpy", "open3d", "numba", "ray", "rerun", "rerun_cli")

# Run as `python -c prelude() + code`: any import of a blocked module fails like a missing package.
def prelude(blocked: tuple[str, ...] = BLOCKED) -> str:
    return textwrap.dedent(f"""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None
    sys.meta_path.insert(0, Block())
    import importlib.util
    _find = importlib.util.find_spec
    def find_spec(name, package=None):
        return None if name.split(".")[0] in {blocked!r} else _find(name, package)
    importlib.util.find_spec = find_spec
""")


def blocked_python(code: str, *args: str, blocked: tuple[str, ...] = BLOCKED) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", prelude(blocked) + textwrap.dedent(code), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=900)


def test_pcssl_train_imports_and_trains_without_blender_open3d_numba_ray(rendered, tmp_path):
    proc = blocked_python("""
        import pkgutil, importlib, sys
        import pcssl_train
        names = [m.name for m in pkgutil.walk_packages(pcssl_train.__path__, "pcssl_train.")]
        for name in names:
            importlib.import_module(name)
        import cma_builder.format.reader, cma_builder.exporters, cma_builder.cli
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"bpy", "open3d", "numba", "ray"})
        print(len(names), "modules", loaded)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "modules []" in proc.stdout
    run = tmp_path / "run"
    proc = blocked_python("""
        import sys
        from pcssl_train.cli import main
        sys.argv = ["pcssl-train"] + sys.argv[1:]
        main()
    """, "pretrain", "-c", "point-mae-tiny", "-d", str(rendered), "-o", str(run), "--set", "optim.epochs=1",
                          "--set", "train.tensorboard=false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (run / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("args, extra", [
    (["render", "--shapenet", "TREE", "--out", "OUT"], "[render]"),
    (["validate", "DS", "--shapenet", "TREE"], "[validate]"),
    (["view", "DS", "--out", "OUT"], "[view]"),
])
def test_commands_name_their_extra(args, extra, rendered, synth_tree, tmp_path):
    args = [str(synth_tree) if a == "TREE" else str(tmp_path / "out") if a == "OUT" else str(rendered) if a == "DS"
            else a for a in args]
    proc = blocked_python("""
        import sys
        from cma_builder.cli import main
        sys.argv = ["cma-build"] + sys.argv[1:]
        main()
    """, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"pip install 'cma-toolkit{extra}'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_pcssl_train_without_torch_names_the_extra(rendered, tmp_path):
    code = """
        import sys
        from pcssl_train.cli import main
        sys.argv = ["pcssl-train"] + sys.argv[1:]
        main()
    """
    assert blocked_python(code, "--help", blocked=BLOCKED + ("torch",)).returncode == 0
    proc = blocked_python(code, "pretrain", "-c", "point-mae-tiny", "-d", str(rendered), "-o", str(tmp_path / "r"),
                          blocked=BLOCKED + ("torch",))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "Error: pcssl-train needs the [train] extra (torch is not installed): pip install 'cma-toolkit[train]'")
    assert not (tmp_path / "r").exists()


def test_export_runs_without_render_extras(rendered, tmp_path):
    proc = blocked_python("""
        import sys
        from cma_builder.cli import main
        sys.argv = ["cma-build"] + sys.argv[1:]
        main()
    """, "export", str(rendered), "--format", "shapenet55", "--points", "1024", "--out", str(tmp_path / "e"))
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "e" / "shapenet_pc").glob("*.npy"))) == 8


def test_format_package_needs_neither_blender_nor_torch(rendered):
    proc = blocked_python("""
        import sys
        from cma_builder.format import DatasetReader, ShardArray
        ds = DatasetReader.open(sys.argv[1])
        obj = ds.objects()[0]
        arrays = ds.load(obj)
        fast = isinstance(ds.array(obj.shard, "rgb"), ShardArray)
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"bpy", "torch", "open3d", "numba", "ray"})
        print(len(arrays), "arrays, fast", fast, "loaded", loaded)
    """, str(rendered), blocked=BLOCKED + ("torch",))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "23 arrays, fast True loaded []", proc.stdout


# --- the store in standard tools ---------------------------------------------------------
def test_xarray_and_dask_open_the_shards(rendered):
    xr = pytest.importorskip("xarray")
    da = pytest.importorskip("dask.array")
    row = index_rows(rendered)[0]
    shard = rendered / "shards" / row["shard"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no consolidated-metadata fallback, no unknown dimensions
        ds = xr.open_zarr(shard)
    group = zarr.open_group(shard, mode="r")
    assert ds["rgb"].dims == ("object", "view", "y", "x", "channel")
    assert ds["fused_pixels"].dims == ("object", "fused_point", "view", "vu")
    assert ds["K"].dims == ("object", "view", "k_row", "k_col")
    assert ds["world_to_cam"].dims == ("object", "view", "row", "col")
    assert set(ds.data_vars) == set(group.array_keys())
    i = int(row["row"])
    np.testing.assert_array_equal(ds["depth"][i].values, group["depth"][i])
    assert ds["model_id"].values[i] == row["model_id"]
    rgb = da.from_zarr(str(shard), component="rgb")
    assert rgb.shape == group["rgb"].shape and rgb.chunksize[:2] == (1, 1)
    np.testing.assert_array_equal(rgb[i].compute(), group["rgb"][i])
    # dimension names are in the root attributes too, and the same ones in every shard
    attrs = json.loads((rendered / "zarr.json").read_text())["attributes"]["cma-dataset"]["arrays"]
    assert attrs["rgb"]["dimension_names"] == list(ds["rgb"].dims)
    # the root: xarray sees the shards as a tree (zarr warns about index.csv and log/, which are not zarr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = xr.open_datatree(rendered, engine="zarr")
        assert xr.open_zarr(rendered).attrs["cma-dataset"]["format"] == "cma-dataset"
    assert {n.split("/")[-1] for n in tree["shards"].children} == {r["shard"] for r in index_rows(rendered)}
    assert tree[f"shards/{row['shard']}"]["rgb"].dims == ("object", "view", "y", "x", "channel")


def test_old_shards_stay_readable_and_merge_names_them(rendered, tmp_path):
    """A dataset written before dimension names and consolidation: every reader reads it as before;
    xarray needs the names, which `cma-build merge` adds (metadata only)."""
    import shutil

    from cma_builder.format import DatasetReader, ShardArray
    from conftest import run_cli

    ds = tmp_path / "old"
    shutil.copytree(rendered, ds)
    row = index_rows(ds)[0]
    shard = ds / "shards" / row["shard"]
    before = {p: p.read_bytes() for p in shard.rglob("c/**/*") if p.is_file()}
    assert len(before) >= 20  # one shard file per array
    for meta_path in [shard / "zarr.json", *shard.glob("*/zarr.json")]:
        meta = json.loads(meta_path.read_text())
        meta.pop("dimension_names", None)
        meta.pop("consolidated_metadata", None)
        meta_path.write_text(json.dumps(meta))
    expected = {name: zarr.open_group(rendered / "shards" / row["shard"], mode="r")[name][int(row["row"])]
                for name in ("rgb", "depth", "fused_points", "model_id")}
    reader = DatasetReader.open(ds)
    got = reader.load(next(o for o in reader.objects() if o.shard == row["shard"] and o.row == int(row["row"])))
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)
    fast = ShardArray.open(shard / "rgb")
    assert fast is not None
    np.testing.assert_array_equal(fast.read(int(row["row"])), expected["rgb"])
    xr = pytest.importorskip("xarray")
    with pytest.raises(Exception, match="dimension"):
        xr.open_zarr(shard, consolidated=False)
    proc = run_cli("cma-build", "merge", str(ds))
    assert proc.returncode == 0 and "Added zarr dimension names to 1 shards" in proc.stdout, proc.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xr.open_zarr(shard)["rgb"].dims == ("object", "view", "y", "x", "channel")
    assert {p: p.read_bytes() for p in shard.rglob("c/**/*") if p.is_file()} == before  # no array data rewritten
    proc = run_cli("cma-build", "merge", str(ds))
    assert "Added" not in proc.stdout  # nothing left to do


def test_every_package_on_disk_is_installed():
    """pyproject's explicit package list names every folder with an __init__.py, so a plain
    ``pip install .`` (not only the editable install the tests run in) carries all the code."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for top in ("cma_builder", "blender_scripts", "pcssl_train")
               for p in (REPO / top).rglob("__init__.py")}
    assert on_disk <= listed, f"not installed by pip install .: {sorted(on_disk - listed)}"
    assert listed - on_disk == {"cma_builder.manifests"}  # installed from manifests/ (package-dir)
