"""Cameras and point ops against naive reference implementations (no Blender)."""

import json

import numpy as np
import pytest

from cma_builder.geometry.cameras import (ViewpointSpec, blender_matrix_world, camera_center, camera_rig, direction,
                                 intrinsics, load_pose_file, look_at, project, view_angles)
from cma_builder.errors import CmaError
from cma_builder.geometry.fps import CENTROID, farthest_point_sample
from cma_builder.geometry.fps_kdtree import farthest_point_sample as kdtree_fps
from cma_builder.geometry.visibility import (backproject, bounding_sphere, depth_judgement, depth_test_visibility, in_image,
                                  segment_visibility)
from cma_builder.geometry.normalize import normalize_clouds, normalize_params
from cma_builder.geometry.raycast import MeshRaycaster


def test_intrinsics_use_integer_pixel_centers():
    K = intrinsics(64, 64, 90.0)
    assert K[0, 0] == pytest.approx(32.0) and K[1, 1] == pytest.approx(32.0)
    assert (K[0, 2], K[1, 2]) == (31.5, 31.5)  # the image spans [-0.5, 63.5]
    # A ray through the right edge of the image (u = 63.5) leaves at half the field of view.
    assert (63.5 - K[0, 2]) / K[0, 0] == pytest.approx(np.tan(np.radians(45)))


def test_look_at_is_opencv_and_matches_blender():
    w2c = look_at([0.0, 0.0, -2.0], [0.0, 0.0, 0.0])  # in front of the object, looking at it (+Z)
    R = w2c[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3)) and np.linalg.det(R) == pytest.approx(1.0)
    assert np.allclose(R[2], [0, 0, 1])  # z forward
    assert np.allclose(R[1], [0, -1, 0])  # y down = world -Y
    assert np.allclose(R[0], [-1, 0, 0])  # x right: facing +Z, the right hand points to -X
    assert np.allclose(camera_center(w2c), [0, 0, -2])
    m = blender_matrix_world(w2c)  # Blender cameras look down their -Z with +Y up
    assert np.allclose(m[:3, 3], [0, 0, -2])
    assert np.allclose(-m[:3, 2], [0, 0, 1]) and np.allclose(m[:3, 1], [0, 1, 0])
    top = look_at([0.0, 3.0, 0.0], [0.0, 0.0, 0.0])  # straight down: no NaN, up is the front (-Z)
    assert np.isfinite(top).all() and np.allclose(top[:3, :3] @ [0, 0, -1], [0, -1, 0])


def test_project_matches_naive_pinhole():
    rng = np.random.default_rng(0)
    K = intrinsics(100, 100, 50.0)
    w2c = look_at([1.0, 1.5, -3.0], [0.1, 0.0, 0.2])
    pts = rng.normal(scale=0.3, size=(50, 3))
    pix, z = project(pts, K, w2c)
    for p, (v, u), zz in zip(pts, pix, z):
        x, y, zc = w2c[:3, :3] @ p + w2c[:3, 3]
        assert zz == pytest.approx(zc)
        assert u == pytest.approx(K[0, 0] * x / zc + K[0, 2]) and v == pytest.approx(K[1, 1] * y / zc + K[1, 2])


def test_project_batched_cameras_match_one_at_a_time():
    """(N, 3) points into (V,) or (A, V) cameras -> (N, V, 2) / (N, A, V, 2), each camera as if alone."""
    rng = np.random.default_rng(1)
    K, w2c = camera_rig(ViewpointSpec("sphere", 6), "m", np.zeros(3), 1.0, 40.0, 64)
    pts = rng.normal(scale=0.3, size=(40, 3))
    pix, z = project(pts, K, w2c)
    assert pix.shape == (40, 6, 2) and z.shape == (40, 6)
    for k in range(6):
        one_pix, one_z = project(pts, K[k], w2c[k])
        np.testing.assert_allclose(pix[:, k], one_pix, rtol=0, atol=1e-9)
        np.testing.assert_allclose(z[:, k], one_z, rtol=0, atol=1e-12)
    grid_pix, grid_z = project(pts, K.reshape(2, 3, 3, 3), w2c.reshape(2, 3, 4, 4))
    assert np.array_equal(grid_pix.reshape(40, 6, 2), pix) and np.array_equal(grid_z.reshape(40, 6), z)


def test_backproject_inverts_projection_at_pixel_centers():
    rng = np.random.default_rng(1)
    K = intrinsics(40, 40, 60.0)
    w2c = look_at([0.5, 0.8, -2.0], [0.0, 0.0, 0.0])
    depth = rng.uniform(1.5, 2.5, (40, 40)).astype(np.float32)
    mask = rng.random((40, 40)) > 0.5
    pts, pixels = backproject(depth, mask, K, w2c)
    assert len(pts) == mask.sum()
    pix, z = project(pts, K, w2c)
    assert np.abs(pix - pixels).max() < 1e-6
    assert np.allclose(z, depth[pixels[:, 0], pixels[:, 1]], atol=1e-6)
    assert (mask[pixels[:, 0], pixels[:, 1]]).all()


def fps_reference(points: np.ndarray, k: int, start: int | str = CENTROID) -> list[int]:
    """Textbook FPS, one point at a time, from ``start`` (an index or the point farthest from the centroid)."""
    if start == CENTROID:
        start = int(np.argmax(((points - points.mean(axis=0)) ** 2).sum(1)))
    chosen, dist = [start], np.full(len(points), np.inf)
    for _ in range(k - 1):
        dist = np.minimum(dist, ((points - points[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(np.argmax(dist)))
    return chosen


def test_fps_matches_reference_batched_with_padding():
    rng = np.random.default_rng(2)
    clouds = [rng.random((n, 3)) for n in (300, 180, 5, 0)]
    padded = np.zeros((4, 300, 3))
    for b, c in enumerate(clouds):
        padded[b, : len(c)] = c
    counts = np.array([300, 180, 5, 0])
    idx = kdtree_fps(padded, 16, start=CENTROID, counts=counts)
    assert (farthest_point_sample(padded.astype(np.float32), 16, start=CENTROID, counts=counts) == idx).all()
    assert idx[0].tolist() == fps_reference(clouds[0], 16)
    assert idx[1].tolist() == fps_reference(clouds[1], 16)
    assert sorted(idx[2, :5].tolist()) == [0, 1, 2, 3, 4]  # fewer points than asked: all, then repeated
    assert idx[2, 5:].tolist() == np.resize(idx[2, :5], 11).tolist()
    assert (idx[3] == 0).all()
    for threads in (2, 3, 8):  # split across threads: the same indices
        assert (kdtree_fps(padded, 16, start=CENTROID, counts=counts, threads=threads) == idx).all()


def test_fps_start_index_and_dtype():
    """An int start is the first sample; distances are computed in the points' dtype (float32 or wider)."""
    rng = np.random.default_rng(3)
    pts = rng.random((2, 120, 3))
    for start in (0, 7):
        idx = farthest_point_sample(pts, 20, start=start)
        assert (idx[:, 0] == start).all()
        assert idx[1].tolist() == fps_reference(pts[1], 20, start)
        assert (kdtree_fps(pts, 20, start=start) == farthest_point_sample(pts.astype(np.float32), 20, start=start)).all()
    assert (farthest_point_sample(pts.astype(np.float16), 9) == farthest_point_sample(pts.astype(np.float16)
                                                                                      .astype(np.float32), 9)).all()
    line = np.array([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [9, 9, 9]]] * 2)  # 3 valid points, then none
    assert farthest_point_sample(line, 5, counts=np.array([3, 0])).tolist() == [[0, 2, 1, 0, 2], [0] * 5]
    with pytest.raises(ValueError, match="start"):
        farthest_point_sample(pts, 4, start=120)
    with pytest.raises(ValueError, match="start"):
        farthest_point_sample(pts, 4, start="middle")


@pytest.mark.parametrize("kind", ["uniform", "grid-ties", "rounded-normal", "surface"])
def test_kdtree_fps_equals_dense_fps(kind):
    """The kd-bucket kernel skips leaves; it must pick exactly the dense form's indices, also with
    exact ties and duplicate points, and on clouds of many leaves."""
    import cma_builder.geometry.fps_kdtree as fps_kdtree

    rng = np.random.default_rng(len(kind))
    counts = np.array([3000, 1700, 257, 256, 1, 0])
    if kind == "uniform":
        pts = rng.random((6, 3000, 3))
    elif kind == "grid-ties":  # many equal distances and repeated points
        pts = rng.integers(0, 6, (6, 3000, 3)).astype(float)
    elif kind == "rounded-normal":
        pts = np.round(rng.normal(size=(6, 3000, 3)), 2)
    else:  # a sphere's surface, like the back-projected views
        d = rng.normal(size=(6, 3000, 3))
        pts = d / np.linalg.norm(d, axis=2, keepdims=True) * 0.8
    for k in (1, 64, 700):
        dense = farthest_point_sample(pts.astype(np.float32), k, start=CENTROID, counts=counts)
        for leaf in (4, 37, fps_kdtree.LEAF):
            old, fps_kdtree.LEAF = fps_kdtree.LEAF, leaf
            try:
                assert (kdtree_fps(pts, k, start=CENTROID, counts=counts) == dense).all(), (k, leaf)
            finally:
                fps_kdtree.LEAF = old
    if kind == "uniform":  # no near-ties: float32 agrees with the float64 textbook form
        assert kdtree_fps(pts, 50, start=CENTROID, counts=counts)[1].tolist() == fps_reference(pts[1, :1700], 50)


def test_normalize_matches_naive_unit_sphere():
    pts = np.random.default_rng(4).normal(size=(3, 40, 3)).astype(np.float32) * 3 + 1
    out = normalize_clouds(pts)
    assert out.dtype == np.float32
    for p, o in zip(pts.astype(np.float64), out):
        c = p.mean(axis=0)
        np.testing.assert_allclose(o, (p - c) / np.linalg.norm(p - c, axis=1).max(), rtol=0, atol=1e-6)
    s, t = normalize_params(np.zeros((0, 3)))  # an empty cloud keeps its scale
    assert s == 1.0 and t.shape == (3,)
    assert normalize_params(np.ones((4, 3)))[0] == 1.0  # a single point: no division by zero


def test_bounding_sphere_ignores_non_finite_vertices():
    v = np.array([[0.0, 0, 0], [2, 0, 0], [0, 4, 0], [np.nan, 9, 9], [np.inf, 0, 0]])
    center, radius, diagonal = bounding_sphere(v)
    assert np.allclose(center, [1, 2, 0]) and np.isclose(radius, np.sqrt(5)) and np.isclose(diagonal, np.sqrt(20))
    with pytest.raises(ValueError, match="no finite vertices"):
        bounding_sphere(np.full((3, 3), np.nan))


def test_depth_test_visibility_matches_naive_depth_test():
    rng = np.random.default_rng(3)
    V, H, W = 3, 24, 32
    K = np.stack([intrinsics(W, H, 55.0)] * V)
    w2c = np.stack([look_at(direction(a, 20.0) * 2.5, [0, 0, 0]) for a in (0, 120, 240)])
    depth = rng.uniform(2.0, 3.0, (V, H, W)).astype(np.float32)
    mask = rng.random((V, H, W)) > 0.3
    pts = rng.normal(scale=0.5, size=(200, 3))
    pixels, visible = depth_test_visibility(pts, depth, mask, K, w2c, tolerance=0.05)
    for f, p in enumerate(pts):
        for k in range(V):
            pix, zz = project(p[None], K[k], w2c[k])
            (v, u), z = pix[0], zz[0]
            assert pixels[f, k].tolist() == pytest.approx([v, u], abs=1e-3)
            expected = False
            for r in (int(np.floor(v)), int(np.floor(v)) + 1):
                for c in (int(np.floor(u)), int(np.floor(u)) + 1):
                    if z > 0 and 0 <= r < H and 0 <= c < W and mask[k, r, c] and z - depth[k, r, c] <= 0.05:
                        expected = True
            assert visible[f, k] == expected


def naive_first_hit(vertices, triangles, origin, direction):
    """Smallest t > 0 of origin + t * direction on any triangle (Moller-Trumbore, float64, one
    triangle at a time), and the smallest barycentric margin of that hit (0 = on an edge)."""
    best, margin = np.inf, np.inf
    for tri in triangles:
        a, b, c = vertices[tri]
        e1, e2 = b - a, c - a
        pvec = np.cross(direction, e2)
        det = e1 @ pvec
        if abs(det) < 1e-15:
            continue
        tvec = origin - a
        u = (tvec @ pvec) / det
        qvec = np.cross(tvec, e1)
        v = (direction @ qvec) / det
        t = (e2 @ qvec) / det
        if u >= 0 and v >= 0 and u + v <= 1 and 0 < t < best:
            best, margin = t, min(u, v, 1 - u - v)
    return best, margin


def random_mesh(rng, n=40):
    centers = rng.uniform(-0.5, 0.5, (n, 1, 3))
    vertices = (centers + rng.normal(scale=0.15, size=(n, 3, 3))).reshape(-1, 3)
    return vertices, np.arange(3 * n).reshape(n, 3)


def test_raycaster_first_hit_matches_naive_ray_triangle():
    rng = np.random.default_rng(4)
    vertices, triangles = random_mesh(rng)
    mesh = MeshRaycaster(vertices, triangles)
    origins = rng.normal(size=(400, 3)) * 2.0
    directions = rng.uniform(-0.4, 0.4, (400, 3)) - origins  # mostly toward the mesh
    t = mesh.first_hit(origins, directions)
    checked = 0
    for o, d, got in zip(origins, directions, t):
        want, margin = naive_first_hit(vertices, triangles, o, d)
        if margin < 1e-4:  # grazing an edge: float32 may pick the neighbour
            continue
        checked += 1
        assert (np.isinf(got) and np.isinf(want)) or got == pytest.approx(want, rel=1e-5)
    assert checked > 300 and np.isfinite(t).sum() > 100
    assert (MeshRaycaster(np.zeros((0, 3)), np.zeros((0, 3), int)).first_hit(origins[:3], directions[:3]) == np.inf).all()


def test_segment_visibility_matches_naive_rule():
    rng = np.random.default_rng(5)
    vertices, triangles = random_mesh(rng, 25)
    # Points on the triangles (what back-projection yields) and a few off them.
    bary = rng.dirichlet([1, 1, 1], 150)
    pts = np.einsum("nk,nkj->nj", bary, vertices[triangles[rng.integers(0, 25, 150)]])
    pts = np.concatenate([pts, rng.uniform(-0.6, 0.6, (30, 3))])
    V, H, W = 4, 20, 28
    K = np.stack([intrinsics(W, H, 50.0)] * V)
    w2c = np.stack([look_at(direction(a, 25.0) * 2.2, [0, 0, 0]) for a in (0, 90, 180, 270)])
    tol = 1e-4
    pixels, visible = segment_visibility(pts, K, w2c, H, W, MeshRaycaster(vertices, triangles).first_hit, tol)
    checked = 0
    for f, p in enumerate(pts):
        for k in range(V):
            pix, zz = project(p[None], K[k], w2c[k])
            (v, u), z = pix[0], zz[0]
            assert pixels[f, k].tolist() == pytest.approx([v, u], abs=1e-3)
            inside = z > 0 and -0.5 <= v < H - 0.5 and -0.5 <= u < W - 0.5
            c = camera_center(w2c[k])
            t, margin = naive_first_hit(vertices, triangles, c, p - c)
            gap = (1 - t) * np.linalg.norm(p - c)
            if inside and (margin < 1e-4 or abs(gap - tol) < 1e-5):
                continue  # on an edge, or at the tolerance itself: float32 may decide either way
            checked += 1
            assert visible[f, k] == (inside and gap <= tol), (f, k, gap)
    assert checked > 600 and 0.2 < visible.mean() < 0.8


def test_in_image_uses_pixel_areas():
    pix = np.array([[-0.5, -0.5], [-0.51, 3.0], [3.0, 9.49], [3.0, 9.5], [7.49, 0.0], [np.nan, 1.0]])
    assert in_image(pix, np.ones(6), 8, 10).tolist() == [True, False, True, False, True, False]
    assert not in_image(pix[:1], -np.ones(1), 8, 10)[0]  # behind the camera


def test_depth_judgement_matches_naive():
    rng = np.random.default_rng(6)
    V, H, W = 2, 16, 16
    K = np.stack([intrinsics(W, H, 50.0)] * V)
    w2c = np.stack([look_at(direction(a, 10.0) * 3.0, [0, 0, 0]) for a in (0, 180)])
    depth = rng.uniform(2.5, 3.5, (V, H, W))
    mask = rng.random((V, H, W)) > 0.1
    pts = rng.normal(scale=0.4, size=(300, 3))
    hidden, visible = depth_judgement(pts, depth, mask, K, w2c, behind=0.05, on=0.3)
    for f, p in enumerate(pts):
        for k in range(V):
            (v, u), z = (x[0] for x in project(p[None], K[k], w2c[k]))
            r, c = int(np.floor(v)), int(np.floor(u))
            want = (False, False)
            if z > 0 and 0 <= r < H - 1 and 0 <= c < W - 1 and mask[k, r:r + 2, c:c + 2].all():
                d = depth[k, r:r + 2, c:c + 2]
                a, b = v - r, u - c
                inv = (1 - a) * (1 - b) / d[0, 0] + (1 - a) * b / d[0, 1] + a * (1 - b) / d[1, 0] + a * b / d[1, 1]
                want = ((z - d > 0.05).all(), abs(z - 1 / inv) <= 0.3)
            assert (hidden[f, k], visible[f, k]) == want, (f, k)
    assert 0 < hidden.sum() < hidden.size and 0 < visible.sum() < visible.size


def test_viewpoint_schemes():
    ring = view_angles(ViewpointSpec("ring", 8, (-15.0, 30.0)), "m")
    assert [e for _, e, _ in ring] == [-15.0] * 4 + [30.0] * 4
    assert [a for a, _, _ in ring[:4]] == [0.0, 90.0, 180.0, 270.0]
    sphere = np.array([direction(a, e) for a, e, _ in view_angles(ViewpointSpec("sphere", 200), "m")])
    assert abs(sphere.mean(axis=0)).max() < 0.02  # even coverage: no preferred direction
    assert (sphere[:, 1] > 0).mean() == pytest.approx(0.5, abs=0.01)
    r1 = view_angles(ViewpointSpec("random", 6, seed=4), "model-a")
    assert r1 == view_angles(ViewpointSpec("random", 6, seed=4), "model-a")
    assert r1 != view_angles(ViewpointSpec("random", 6, seed=4), "model-b")
    with pytest.raises(CmaError, match="does not split evenly"):
        ViewpointSpec("ring", 7, (0.0, 30.0))
    # Fitting the bounding sphere: every view's camera sees the whole sphere.
    K, w2c = camera_rig(ViewpointSpec("sphere", 10), "m", [0.1, 0.2, 0.3], 0.5, 40.0, 64)
    for m in w2c:
        assert np.linalg.norm(camera_center(m) - [0.1, 0.2, 0.3]) == pytest.approx(0.5 / np.sin(np.radians(20)))


def test_pose_file(tmp_path):
    m = look_at([0.0, 1.0, -2.0], [0.0, 0.0, 0.0])
    f = tmp_path / "poses.json"
    f.write_text(json.dumps([{"azimuth": 90, "elevation": 10}, {"azimuth": 0, "elevation": 0, "distance": 3},
                             {"world_to_cam": m.tolist()}]))
    spec = ViewpointSpec("file", 3, poses=load_pose_file(f))
    K, w2c = camera_rig(spec, "m", [0, 0, 0], 0.5, 40.0, 32)
    assert np.allclose(camera_center(w2c[0]), direction(90, 10) * 0.5 / np.sin(np.radians(20)))
    assert np.allclose(camera_center(w2c[1]), [0, 0, -3])
    assert np.allclose(w2c[2], m)
    f.write_text(json.dumps([{"world_to_cam": np.diag([1.0, 1.0, -1.0, 1.0]).tolist()}]))
    with pytest.raises(CmaError, match="rigid transform"):
        load_pose_file(f)
    f.write_text("[{}]")
    with pytest.raises(CmaError, match="pose 0"):
        load_pose_file(f)
