"""How rendered radiance becomes the stored 8-bit sRGB (pure numpy; docs/DATA_FORMAT.md, "Lighting and exposure").

The light rig is fixed in the OBJ frame (Y up, -Z front): uniform white ambient light from the
world, a key sun from the upper front-left and a weaker fill sun from the upper back-right.
Cycles' units: a world of strength A gives a white (albedo 1) Lambertian surface that sees the
whole sky radiance A; a sun of strength S gives it S cos(theta) / pi. The suns are 111 degrees
apart, so no normal faces both fully: the brightest unshadowed white surface faces the key sun,
at A + S_key / pi = 0.777, below the tone curve's knee (0.8). Diffuse shading is therefore stored
linearly (then sRGB-encoded, at most 228 of 255 for albedo 1). Even the loose bound
A + (S_key + S_fill) / pi = 0.937 (every light at normal incidence at once) stays below 1. Anything
brighter (specular highlights of the suns, light gathered in concave white parts, emission) goes
through a smooth shoulder toward 1: a stored 255 needs linear radiance of 1.56 or more, twice the
brightest white diffuse surface.
"""

from __future__ import annotations

import math

import numpy as np

AMBIENT = 0.3  # world strength: sky radiance
KEY_SUN = ((-0.5, 0.8, -0.6), 1.5)  # (direction the light comes from, strength in W/m^2)
FILL_SUN = ((0.6, 0.4, 0.7), 0.5)
SUN_ANGLE_DEG = 10.0  # angular diameter of both suns (soft shadow edges)
TONE_KNEE = 0.8  # linear value where the shoulder starts; below it the curve is the identity
SATURATED_LEVEL = 250  # validate's images.saturated: a pixel at or above this in all three channels


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def diffuse_radiance(normal, albedo: float = 1.0, sky_visible: float = 1.0) -> float:
    """Linear radiance of an unshadowed Lambertian surface with this normal under the rig
    (``sky_visible``: the fraction of the ambient sky it sees, 1 for a convex object)."""
    n = unit(normal)
    suns = sum(s * max(0.0, float(n @ unit(d))) for d, s in (KEY_SUN, FILL_SUN)) / math.pi
    return albedo * (AMBIENT * sky_visible + suns)


def diffuse_peak(albedo: float = 1.0) -> float:
    """Brightest unshadowed diffuse radiance over all normals (max of diffuse_radiance)."""
    k, f = unit(KEY_SUN[0]), unit(FILL_SUN[0])
    (_, sk), (_, sf) = KEY_SUN, FILL_SUN
    both = sk * k + sf * f  # the optimum when it faces both suns
    candidates = [unit(k), unit(f)] + ([unit(both)] if both @ k > 0 and both @ f > 0 else [])
    # on the great circle where one sun grazes, the other is best at its projection
    for a, b in ((k, f), (f, k)):
        p = a - (a @ b) * b
        if np.linalg.norm(p) > 0:
            candidates.append(unit(p))
    return max(diffuse_radiance(n, albedo) for n in candidates)


def diffuse_bound(albedo: float = 1.0) -> float:
    """Loose upper bound of diffuse radiance: every light at normal incidence at once."""
    return albedo * (AMBIENT + (KEY_SUN[1] + FILL_SUN[1]) / math.pi)


def tone_map(linear: np.ndarray) -> np.ndarray:
    """Identity below TONE_KNEE; above it knee + (1 - knee)(1 - exp(-(x - knee) / (1 - knee))):
    continuous with slope 1 at the knee, increasing, and approaching 1."""
    x = np.asarray(linear, dtype=np.float64)
    head = 1.0 - TONE_KNEE
    over = np.maximum(x - TONE_KNEE, 0.0)
    return np.where(x > TONE_KNEE, TONE_KNEE + head * -np.expm1(-over / head), x)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def srgb_decode(srgb: np.ndarray) -> np.ndarray:
    srgb = np.asarray(srgb, dtype=np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def to_uint8(linear: np.ndarray) -> np.ndarray:
    return np.rint(srgb_encode(linear) * 255.0).astype(np.uint8)


def composite(premultiplied: np.ndarray, alpha: np.ndarray, background_srgb) -> np.ndarray:
    """Cycles' premultiplied RGB (H, W, 3) and alpha (H, W) over the sRGB background -> uint8 sRGB.
    The tone curve acts on the object's own color (premultiplied / alpha), before the blend with
    the background, so background pixels keep exactly the background color."""
    premultiplied = np.asarray(premultiplied, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        color = np.where(a > 0, premultiplied / a, 0.0)
    excess = np.where(color > TONE_KNEE, tone_map(color) - color, 0.0)  # 0 wherever the curve is the identity
    linear = premultiplied + a * excess + (1.0 - a) * srgb_decode(background_srgb)
    return to_uint8(linear)
