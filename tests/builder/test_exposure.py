"""The light rig, tone curve and compositing of cma_builder.render.exposure (no Blender; the rendered
values are checked in test_fidelity.py)."""

import numpy as np
import pytest

from cma_builder.render.exposure import (AMBIENT, FILL_SUN, KEY_SUN, TONE_KNEE, composite, diffuse_bound, diffuse_peak,
                                  diffuse_radiance, srgb_decode, srgb_encode, to_uint8, tone_map, unit)


def test_tone_curve_is_the_identity_below_the_knee_and_a_smooth_shoulder_above():
    x = np.linspace(0, TONE_KNEE, 1001)
    assert np.array_equal(tone_map(x), x)
    eps = 1e-6
    slope = (tone_map(np.array(TONE_KNEE + eps)) - TONE_KNEE) / eps
    assert slope == pytest.approx(1.0, abs=1e-5)  # no kink at the knee
    y = tone_map(np.linspace(0, 20, 20001))
    assert (np.diff(y) >= 0).all() and y.max() <= 1.0
    assert tone_map(np.array(1.0)) == pytest.approx(TONE_KNEE + (1 - TONE_KNEE) * (1 - np.exp(-1)))
    # 255 only at 1.56 and above: twice the brightest white diffuse surface.
    assert to_uint8(tone_map(np.array(1.55))) == 254 and to_uint8(tone_map(np.array(1.57))) == 255


def test_brightest_white_diffuse_surface_stays_below_the_knee():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(50000, 3))
    brute = max(diffuse_radiance(n) for n in normals)
    assert diffuse_peak() == pytest.approx(brute, abs=1e-3) and brute <= diffuse_peak() + 1e-12
    assert diffuse_peak() == pytest.approx(AMBIENT + KEY_SUN[1] / np.pi)  # the suns are > 90 degrees apart
    assert unit(KEY_SUN[0]) @ unit(FILL_SUN[0]) < 0
    assert diffuse_peak() < TONE_KNEE and diffuse_bound() < 1.0
    assert to_uint8(np.array(diffuse_peak())) == 228
    # A mid-grey (albedo 0.5) surface facing the front camera (azimuth 0, normal -Z).
    assert diffuse_radiance([0, 0, -1], 0.5) == pytest.approx(0.2781, abs=1e-4)
    assert to_uint8(np.array(diffuse_radiance([0, 0, -1], 0.5))) == 144


def test_composite_keeps_the_background_exact_and_maps_only_the_object():
    H, W = 4, 5
    premult = np.zeros((H, W, 3))
    alpha = np.zeros((H, W))
    premult[1, 1], alpha[1, 1] = 0.3, 1.0  # below the knee: stored as is
    premult[2, 2], alpha[2, 2] = 3.0, 1.0  # highlights: 255 from 1.56 up
    premult[2, 3], alpha[2, 3] = 1.6, 1.0
    premult[3, 3], alpha[3, 3] = 0.15, 0.5  # half-covered edge pixel of a 0.3 surface
    for background in ((1.0, 1.0, 1.0), (0.2, 0.4, 0.6)):
        out = composite(premult, alpha, background)
        bg = np.rint(np.asarray(background) * 255).astype(np.uint8)
        assert (out[alpha == 0] == bg).all()
        assert (out[1, 1] == to_uint8(np.array(0.3))).all()
        assert (out[2, 2] == 255).all() and (out[2, 3] == 255).all()
        half = to_uint8(0.15 + 0.5 * srgb_decode(np.asarray(background)))
        assert np.array_equal(out[3, 3], half)
    assert np.allclose(srgb_decode(srgb_encode(np.linspace(0, 1, 11))), np.linspace(0, 1, 11))
