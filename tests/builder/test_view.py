"""cma-build view: the Rerun recording read back with Rerun's own reader (rerun.dataframe, and the
`rerun rrd verify / print` of the pinned rerun-sdk), compared with the stored arrays by number: every
entity, the cameras (K through the half-pixel shift, resolution, world_to_cam), the point counts,
the images, and stored points projected through the recorded pinholes onto their stored pixels.
--serve runs Rerun's real server and is checked for where it listens and that no usage data is set up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN
from cma_builder.format import DatasetReader
from cma_builder.view.pinhole import (project_rerun, rerun_image_from_camera, rerun_pixel, rerun_xy, stored_K)

rr = pytest.importorskip("rerun")


def read_back(rrd: Path) -> dict[str, dict[str, object]]:
    """{entity path: {component: value}} of a recording's static data, through Rerun's dataframe reader."""
    import warnings

    recording = rr.dataframe.load_recording(str(rrd))
    view = recording.view(index="log_tick", contents="/**", include_indicator_columns=False)
    with warnings.catch_warnings():
        table = view.select_static().read_all()
    out: dict[str, dict[str, object]] = {}
    for name in table.schema.names:
        entity, _, component = name.rpartition(":")
        value = table.column(name).to_pylist()[0]
        out.setdefault(entity, {})[component] = value[0] if isinstance(value, list) and len(value) == 1 else value
    return out


def mat3(flat_columns) -> np.ndarray:
    return np.asarray(flat_columns, dtype=np.float64).reshape(3, 3).T  # Rerun stores 3x3 column-major


def image(entity: dict) -> np.ndarray:
    fmt = entity["ImageFormat"]
    buffer = np.asarray(entity["ImageBuffer"], dtype=np.uint8)
    dtype = {6: np.uint8, 34: np.float32}.get(fmt["channel_datatype"])  # rr.datatypes.ChannelDatatype U8, F32
    assert dtype is not None, fmt
    data = buffer.view(dtype)
    channels = data.size // (fmt["width"] * fmt["height"])
    return data.reshape(fmt["height"], fmt["width"], channels).squeeze(-1) if channels == 1 else \
        data.reshape(fmt["height"], fmt["width"], channels)


def write(ds: Path, out: Path, *extra: str):
    from click.testing import CliRunner

    from cma_builder.cli import cli

    result = CliRunner().invoke(cli, ["view", str(ds), "--out", str(out), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_rerun_pixel_convention_is_rerun_own_centered_pinhole():
    """Our mapping of a centered K (principal point (W-1)/2, integer pixel centers) is what Rerun
    itself builds for a centered camera of that size (principal point W/2): the half-pixel shift."""
    for w, h, f in ((64, 64, 87.9), (224, 160, 300.0), (31, 17, 20.0)):
        K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
        theirs = mat3(rr.Pinhole(focal_length=f, width=w, height=h).image_from_camera.as_arrow_array().to_pylist()[0])
        assert np.allclose(rerun_image_from_camera(K), theirs, atol=1e-4)
        assert np.allclose(stored_K(rerun_image_from_camera(K)), K)
    # the pixel a Rerun image coordinate falls on: pixel (v, u) covers [u, u+1) x [v, v+1) in Rerun,
    # [u-0.5, u+0.5) x [v-0.5, v+0.5) in the dataset (docs/CONVENTIONS.md, "Inside the image")
    vu = np.array([[0.0, 0.0], [-0.5, -0.5], [0.49, 0.49], [10.2, 3.7], [5.5, 5.5]])
    assert rerun_pixel(rerun_xy(vu)).tolist() == [[0, 0], [0, 0], [0, 0], [10, 4], [6, 6]]


@pytest.fixture(scope="module")
def golden_view(tmp_path_factory):
    from golden.make_golden import GOLDEN

    out = tmp_path_factory.mktemp("view") / "golden.rrd"
    result = write(GOLDEN, out, "--n", "4")
    return GOLDEN, out, read_back(out), result.output


def test_recording_holds_every_entity_and_the_stored_cameras(golden_view):
    ds, rrd, rec, output = golden_view
    reader = DatasetReader.open(ds)
    objs = reader.objects()
    assert len(objs) == 4 and f"Wrote {rrd}: 4 objects, 16 cameras" in output
    total = 0
    for obj in objs:
        a = reader.load(obj)
        root = f"/objects/{obj.synset_id}/{obj.model_id}"
        assert rec[root]["ViewCoordinates"] == [3, 1, 6]  # right, up, back: right-handed, Y up (as every dataset)
        m = int(a["fused_point_count"])
        points = np.asarray(rec[f"{root}/fused_points"]["Position3D"], dtype=np.float32)
        assert points.shape == (m, 3) and np.array_equal(points, a["fused_points"][:m])
        o = a["fused_origin"][:m].astype(int)
        colors = np.asarray(rec[f"{root}/fused_points"]["Color"], dtype=np.uint32)
        rgba = np.stack([(colors >> s) & 255 for s in (24, 16, 8, 0)], -1)
        assert np.array_equal(rgba[:, :3], a["rgb"][o[:, 0], o[:, 1], o[:, 2]]) and (rgba[:, 3] == 255).all()
        total += m
        V, H, W = a["depth"].shape
        for k in range(V):
            cam = f"{root}/cams/view_{k:02d}"
            assert {cam, f"{cam}/image", f"{cam}/image/rgb", f"{cam}/image/depth", f"{cam}/image/mask",
                    f"{cam}/image/visible"} <= set(rec)
            w2c = a["world_to_cam"][k]
            # the recorded transform is world_to_cam itself (parent -> child), to float32
            assert rec[cam]["TransformRelation"] == 2  # ChildFromParent
            assert np.array_equal(mat3(rec[cam]["TransformMat3x3"]), w2c[:3, :3].astype(np.float32).astype(np.float64))
            assert np.array_equal(np.asarray(rec[cam]["Translation3D"]), w2c[:3, 3].astype(np.float32))
            pinhole = rec[f"{cam}/image"]
            assert np.array_equal(stored_K(mat3(pinhole["PinholeProjection"])),
                                  stored_K(rerun_image_from_camera(a["K"][k]).astype(np.float32)))
            assert np.allclose(stored_K(mat3(pinhole["PinholeProjection"])), a["K"][k], atol=1e-5)
            assert pinhole["Resolution"] == [W, H] and pinhole["ViewCoordinates"] == [3, 2, 5]  # RDF: OpenCV's axes
            assert np.array_equal(image(rec[f"{cam}/image/rgb"]), a["rgb"][k])
            assert np.array_equal(image(rec[f"{cam}/image/depth"]), a["depth"][k])
            assert rec[f"{cam}/image/depth"]["DepthMeter"] == 1.0
            assert np.array_equal(image(rec[f"{cam}/image/mask"]).astype(bool), a["mask"][k])
            vis = a["fused_visible"][:m, k]
            seen = np.asarray(rec[cam]["Position3D"], dtype=np.float64)  # on the camera entity: selected with it
            assert len(seen) == vis.sum() and (seen[:, 2] > 0).all()  # in front of the camera (RDF: +z forward)
            back = (seen - w2c[:3, 3]) @ w2c[:3, :3]  # camera frame -> object frame
            assert np.abs(back - a["fused_points"][:m][vis]).max() < 1e-5
    assert total == sum(int(reader.load(o, ["fused_point_count"])["fused_point_count"]) for o in objs)


def test_points_projected_through_the_recorded_pinholes_land_on_their_stored_pixels(golden_view):
    ds, _, rec, _ = golden_view
    reader = DatasetReader.open(ds)
    checked = 0
    for obj in reader.objects():
        a = reader.load(obj)
        root = f"/objects/{obj.synset_id}/{obj.model_id}"
        m = int(a["fused_point_count"])
        fused = np.asarray(rec[f"{root}/fused_points"]["Position3D"], dtype=np.float64)
        origin = a["fused_origin"][:m].astype(int)
        for k in range(a["depth"].shape[0]):
            cam = f"{root}/cams/view_{k:02d}"
            K = mat3(rec[f"{cam}/image"]["PinholeProjection"])
            t, R = np.asarray(rec[cam]["Translation3D"], dtype=np.float64), mat3(rec[cam]["TransformMat3x3"])
            xy, z = project_rerun(fused, K, t, R)
            mine = origin[:, 0] == k  # each point back-projected from view k lands on its origin pixel
            assert (z[mine] > 0).all()
            assert np.array_equal(rerun_pixel(xy[mine]), origin[mine, 1:])
            checked += int(mine.sum())
            vis = a["fused_visible"][:m, k]  # the 2D points under the image are those projections
            pts2d = np.asarray(rec[f"{cam}/image/visible"]["Position2D"], dtype=np.float64)
            assert len(pts2d) == vis.sum() and np.abs(pts2d - xy[vis]).max() < 1e-3
            assert np.array_equal(rerun_pixel(pts2d), np.floor(a["fused_pixels"][:m, k][vis] + 0.5).astype(int))
    assert checked == sum(int(reader.load(o, ["fused_point_count"])["fused_point_count"]) for o in reader.objects())


def test_views_and_objects_are_chosen_and_source_mesh_is_the_files(tmp_path, synth_tree):
    from golden.make_golden import GOLDEN

    from cma_builder.geometry.raycast import read_obj

    reader = DatasetReader.open(GOLDEN)
    obj = reader.objects()[3]
    out = tmp_path / "one.rrd"
    result = write(GOLDEN, out, "--objects", f"{obj.model_id},{obj.key}", "--views", "1,3,1", "--source", str(synth_tree))
    rec = read_back(out)
    root = f"/objects/{obj.synset_id}/{obj.model_id}"
    assert {e for e in rec if e.startswith("/objects/")} == {e for e in rec if e.startswith(root)}
    assert sorted({e.split("/cams/")[1][:7] for e in rec if "/cams/" in e}) == ["view_01", "view_03"]
    vertices, triangles = read_obj(str(synth_tree / obj.key / "models" / "model_normalized.obj"))
    mesh = rec[f"{root}/source_mesh"]
    assert np.array_equal(np.asarray(mesh["Position3D"], dtype=np.float32), vertices.astype(np.float32))
    assert np.array_equal(np.asarray(mesh["TriangleIndices"]), triangles)
    assert f"1 object, 2 cameras, 256 fused points, {len(triangles)} source triangles" in result.output
    assert not list(tmp_path.glob(".*.tmp"))  # written complete, then renamed into place


def rerun_env(home: Path) -> dict[str, str]:
    """A rerun process that cannot touch the user's Rerun settings (nor turn usage data on for them)."""
    return dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local"))


def test_rerun_cli_verifies_and_prints_the_recording(golden_view, tmp_path):
    _, rrd, rec, _ = golden_view
    binary = BIN / "rerun"
    verify = subprocess.run([str(binary), "rrd", "verify", str(rrd)], capture_output=True, text=True, timeout=120,
                            env=rerun_env(tmp_path))
    assert verify.returncode == 0 and "verified without error" in verify.stdout + verify.stderr, verify.stderr
    printed = subprocess.run([str(binary), "rrd", "print", "-v", str(rrd)], capture_output=True, text=True,
                             timeout=120, env=rerun_env(tmp_path))
    assert printed.returncode == 0, printed.stderr
    for entity in rec:
        if entity.startswith("/objects/"):
            assert f" - {entity} - " in printed.stdout, entity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in open(table).read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hexport = local.split(":")
                if state == "0A" and int(hexport, 16) == port:
                    found.add(address)
    return found


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_serve_listens_on_localhost_only_and_sets_up_no_usage_data(golden_view, tmp_path, stop):
    ds = golden_view[0]
    web, grpc = free_port(), free_port()
    home, scratch = tmp_path / "home", tmp_path / "tmp"  # a killed cma-build cannot remove its temporary folders
    home.mkdir()
    scratch.mkdir()
    proc = subprocess.Popen([str(BIN / "cma-build"), "view", str(ds), "--objects",
                             DatasetReader.open(ds).objects()[0].model_id, "--serve", "--web-port", str(web),
                             "--grpc-port", str(grpc)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(rerun_env(home), TMPDIR=str(scratch)))
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
            lines.append(line)
            if line.startswith("Rerun's usage data is off"):
                break
        text = "".join(lines)
        assert f"ssh -N -L {web}:localhost:{web} -L {grpc}:localhost:{grpc} " in text, text
        assert f"http://localhost:{web}/?url=rerun%2Bhttp%3A%2F%2Flocalhost%3A{grpc}%2Fproxy&notebook=true" in text
        local = "0100007F"  # 127.0.0.1
        assert listening(web) == {local} and listening(grpc) == {local}, (listening(web), listening(grpc))
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=10) as page:
            body = page.read().decode(errors="replace")
        assert page.status == 200 and "Rerun" in body and 'get_query_bool(query, "notebook"' in body
        proc.send_signal(stop)  # to cma-build only: it stops the server it started (killed: the server dies with it)
        assert proc.wait(30) == (-signal.SIGKILL if stop == signal.SIGKILL else 0)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 15
    while (listening(web) or listening(grpc)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert listening(web) == set() and listening(grpc) == set()  # the server is gone too
    assert not any(home.rglob("*")), sorted(home.rglob("*"))  # no Rerun config or usage-data file of the user's


def test_out_inside_the_dataset_is_refused_also_through_a_link(tmp_path):
    """The shards moved to another disk and linked back: a path through the link is still inside the dataset."""
    import shutil

    from click.testing import CliRunner

    from golden.make_golden import GOLDEN
    from cma_builder.cli import cli

    ds = tmp_path / "ds"
    shutil.copytree(GOLDEN, ds)
    shutil.move(ds / "shards", tmp_path / "elsewhere")
    (ds / "shards").symlink_to(tmp_path / "elsewhere")
    shard = next((tmp_path / "elsewhere").iterdir()).name
    before = sorted((p.name, p.stat().st_size) for p in (tmp_path / "elsewhere").rglob("*"))
    for out in (ds / "v.rrd", ds / "shards" / shard / "v.rrd", ds / "index.csv"):
        result = CliRunner().invoke(cli, ["view", str(ds), "--n", "1", "--out", str(out)])
        assert result.exit_code == 2 and "inside the dataset" in result.output, result.output
    assert sorted((p.name, p.stat().st_size) for p in (tmp_path / "elsewhere").rglob("*")) == before
    assert (ds / "index.csv").read_text().startswith("synset_id,")
