"""Category generators for the procedural mini-ShapeNet.

Each generator assembles one model from parts with random proportions (design units are
roughly meters; Y up, -Z front, as ShapeNetCore.v2). Every model gets several materials;
some get JPG textures and some a transparent (d 0.3) material, as real ShapeNet has.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cma_builder.source.synth.mesh import Model, Part, box, cylinder, hexahedron, lathe, rot_x, rot_y, rot_z, sphere, tube
from cma_builder.source.synth.textures import make_texture

MIRROR_X = np.diag([-1.0, 1.0, 1.0])
GLASS_OPACITY = 0.3

PALETTE = {
    "white": (0.9, 0.9, 0.88), "grey": (0.55, 0.56, 0.58), "dark": (0.12, 0.12, 0.13),
    "red": (0.75, 0.12, 0.1), "blue": (0.12, 0.25, 0.7), "green": (0.15, 0.5, 0.22),
    "yellow": (0.9, 0.75, 0.15), "orange": (0.9, 0.45, 0.1), "teal": (0.1, 0.55, 0.55),
    "wood": (0.55, 0.35, 0.18), "oak": (0.72, 0.55, 0.33), "cream": (0.93, 0.88, 0.75),
    "brown": (0.35, 0.2, 0.12), "purple": (0.45, 0.2, 0.55), "silver": (0.75, 0.76, 0.78),
    "glass": (0.55, 0.7, 0.8),
}


class Assembly:
    """A model under construction plus the texture images its materials reference."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.model = Model()
        self.textures: list[tuple[str, np.ndarray]] = []

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def color(self, *names: str) -> tuple[float, float, float]:
        base = np.asarray(PALETTE[names[int(self.rng.integers(len(names)))]])
        return tuple(np.clip(base * self.u(0.85, 1.15), 0, 1))

    def material(self, color, opacity: float = 1.0, texture: str | None = None, accent=None) -> int:
        """A material; with ``texture`` (a kind from textures.KINDS) it maps a new JPG."""
        if texture is None:
            return self.model.material(color, opacity)
        name = f"texture{len(self.textures)}.jpg"
        accent = accent if accent is not None else self.color("white", "dark", "red", "blue", "yellow")
        self.textures.append((name, make_texture(texture, self.rng, color, accent)))
        return self.model.material((1.0, 1.0, 1.0), opacity, name)  # ShapeNet: Kd 1 1 1 under map_Kd

    def add(self, name: str, material: int, *parts: Part) -> None:
        self.model.add(name, material, *parts)


def _along_z(part: Part) -> Part:
    """Turn a part built along +Y so that it runs along -Z (toward the front)."""
    return part.transformed(rot_x(-90))


def _along_x(part: Part) -> Part:
    return part.transformed(rot_z(-90))


def _swept(root_x, tip_x, y, lead, trail, tip_lead, tip_trail, thick, tip_thick) -> Part:
    """A tapered, swept slab from x=root_x to x=tip_x (wings, stabilizers)."""
    return hexahedron([
        (root_x, y - thick / 2, lead), (tip_x, y - tip_thick / 2, tip_lead),
        (tip_x, y - tip_thick / 2, tip_trail), (root_x, y - thick / 2, trail),
        (root_x, y + thick / 2, lead), (tip_x, y + tip_thick / 2, tip_lead),
        (tip_x, y + tip_thick / 2, tip_trail), (root_x, y + thick / 2, trail),
    ])


def _band(r_lo: float, r_hi: float, lo: float, hi: float, segments: int) -> Part:
    """A thin printed ring just outside a wall of radius r_lo at y=lo to r_hi at y=hi;
    the texture spans its height once."""
    gap, th = 0.0008, 0.0006
    ring = [(r_lo + gap, lo), (r_hi + gap, hi), (r_hi + gap + th, hi), (r_lo + gap + th, lo)]
    return lathe(ring, segments, uv_scale=1.0 / (hi - lo), u_repeat=2.0)


def airplane(a: Assembly) -> None:
    length = a.u(2.5, 4.5)
    r = length * a.u(0.045, 0.08)
    livery = a.chance(0.35)
    body = a.material(a.color("white", "grey", "silver", "blue"), texture="stripes" if livery else None)
    wing_mat = a.material(a.color("white", "grey", "silver", "red"))
    dark = a.material(a.color("dark", "grey"))
    profile = [(0, 0), (r * a.u(0.2, 0.45), 0), (r, length * a.u(0.2, 0.3)), (r, length * a.u(0.72, 0.82)),
               (r * 0.6, length * 0.93), (r * 0.12, length), (0, length)]
    a.add("fuselage", body, _along_z(lathe(profile, 24, uv_scale=1.0)).moved(z=length / 2))

    span = length * a.u(0.8, 1.3)
    chord = length * a.u(0.14, 0.24)
    taper = a.u(0.3, 0.7)
    sweep = np.tan(np.radians(a.u(0, 35)))
    wing_y = r * a.u(-0.6, 0.4)
    lead = -length * a.u(0.0, 0.18)
    tip_lead = lead + span / 2 * sweep
    for side in (1, -1):
        wing = _swept(0, span / 2, wing_y, lead, lead + chord, tip_lead, tip_lead + chord * taper,
                      chord * 0.12, chord * 0.05)
        a.add(f"wing_{'r' if side > 0 else 'l'}", wing_mat, wing if side > 0 else wing.transformed(MIRROR_X))

    tail_z = length / 2 - length * a.u(0.1, 0.16)
    stab_span = span * a.u(0.28, 0.42)
    stab_chord = chord * a.u(0.45, 0.7)
    for side in (1, -1):
        stab = _swept(0, stab_span / 2, r * 0.4, tail_z, tail_z + stab_chord, tail_z + stab_span / 2 * sweep,
                      tail_z + stab_span / 2 * sweep + stab_chord * 0.6, stab_chord * 0.1, stab_chord * 0.05)
        a.add(f"stabilizer_{'r' if side > 0 else 'l'}", wing_mat, stab if side > 0 else stab.transformed(MIRROR_X))
    fin_h = length * a.u(0.12, 0.22)
    fin_chord = length * a.u(0.1, 0.17)
    fin = _swept(0, fin_h, 0, tail_z - fin_chord * 0.3, tail_z + fin_chord * 0.7,
                 tail_z + fin_h * sweep * 1.2, tail_z + fin_h * sweep * 1.2 + fin_chord * 0.5,
                 fin_chord * 0.1, fin_chord * 0.05)
    a.add("fin", body, fin.transformed(rot_z(90)).moved(y=r * 0.6))

    engines = int(a.rng.choice([0, 2, 2, 4]))
    if engines:
        er = r * a.u(0.3, 0.5)
        el = chord * a.u(0.6, 0.9)
        xs = [span * a.u(0.14, 0.22)] + ([span * a.u(0.3, 0.38)] if engines == 4 else [])
        for x in xs:
            for side in (1, -1):
                z = lead + x * sweep - el * 0.3
                eng = _along_z(cylinder(er, el, 16, radius_top=er * 0.8)).moved(x=side * x, y=wing_y - er * 1.3, z=z + el)
                a.add("engine", dark, eng)
    if a.chance(0.4):
        glass = a.material(PALETTE["glass"], GLASS_OPACITY)
        canopy = sphere(r * 0.55, 16, 8).transformed(np.diag([1.0, 0.7, 2.2]))
        a.add("canopy", glass, canopy.moved(y=r * 0.75, z=-length * 0.36))


def car(a: Assembly) -> None:
    length, width = a.u(3.8, 5.0), a.u(1.6, 2.0)
    wheel_r, wheel_w = a.u(0.3, 0.4), a.u(0.18, 0.26)
    paint = a.material(a.color("red", "blue", "white", "dark", "silver", "green", "yellow"),
                       texture="stripes" if a.chance(0.25) else None)
    glass = a.material(PALETTE["glass"] if a.chance(0.5) else PALETTE["dark"], GLASS_OPACITY if a.chance(0.35) else 1.0)
    tire = a.material(a.color("dark"))
    chrome = a.material(a.color("silver", "grey"))
    bottom = wheel_r * 0.55
    top = bottom + a.u(0.45, 0.7)
    hood = top - a.u(0.0, 0.15)
    x, z = width / 2, length / 2
    a.add("body", paint, hexahedron([(-x, bottom, -z), (x, bottom, -z), (x, bottom, z), (-x, bottom, z),
                                     (-x, hood, -z), (x, hood, -z), (x, top, z), (-x, top, z)]))
    cab_front, cab_back = -length * a.u(0.05, 0.18), length * a.u(0.22, 0.38)
    cab_h = a.u(0.38, 0.58)
    inset = width * a.u(0.04, 0.1)
    rake = a.u(0.3, 0.6)
    a.add("cabin", glass, hexahedron([
        (-x + 0.02, top, cab_front), (x - 0.02, top, cab_front), (x - 0.02, top, cab_back), (-x + 0.02, top, cab_back),
        (-x + inset, top + cab_h, cab_front + rake), (x - inset, top + cab_h, cab_front + rake),
        (x - inset, top + cab_h, cab_back - rake * 0.5), (-x + inset, top + cab_h, cab_back - rake * 0.5)]))
    a.add("roof", paint, box(width - 2 * inset, 0.04, cab_back - cab_front - rake * 1.5).moved(
        y=top + cab_h + 0.02, z=(cab_front + rake + cab_back - rake * 0.5) / 2))
    axle = z - a.u(0.65, 0.95)
    for wz in (-axle, axle):
        for side in (1, -1):
            wheel = _along_x(cylinder(wheel_r, wheel_w, 24)).moved(x=side * (x - wheel_w * 0.4), y=wheel_r, z=wz)
            if side < 0:  # the cylinder runs toward +X from its base
                wheel = wheel.moved(x=-wheel_w)
            a.add("wheel", tire, wheel)
            hub = _along_x(cylinder(wheel_r * 0.55, 0.02, 16)).moved(x=side * (x + wheel_w * 0.6), y=wheel_r, z=wz)
            a.add("hubcap", chrome, hub if side > 0 else hub.moved(x=-0.02))
    light = a.material((1.0, 0.95, 0.7))
    tail = a.material((0.8, 0.05, 0.05))
    for side in (1, -1):
        a.add("headlight", light, box(0.3, 0.1, 0.04).moved(x=side * (x - 0.25), y=hood - 0.12, z=-z - 0.02))
        a.add("taillight", tail, box(0.3, 0.1, 0.04).moved(x=side * (x - 0.25), y=top - 0.12, z=z + 0.02))


def chair(a: Assembly) -> None:
    sw, sd = a.u(0.4, 0.6), a.u(0.4, 0.55)
    seat_y, st = a.u(0.38, 0.5), a.u(0.03, 0.08)
    frame = a.material(a.color("wood", "oak", "dark", "silver", "white"),
                       texture="wood" if a.chance(0.3) else None)
    seat = a.material(a.color("red", "blue", "green", "cream", "grey", "oak", "teal"),
                      texture=str(a.rng.choice(["fabric", "checker", "wood"])) if a.chance(0.5) else None)
    a.add("seat", seat, box(sw, st, sd).moved(y=seat_y - st / 2))
    if a.chance(0.2):  # swivel chair: column and a five-star base
        a.add("column", frame, cylinder(0.03, seat_y - st - 0.06, 16).moved(y=0.06))
        for k in range(5):
            leg = box(0.05, 0.04, sw * 0.55).moved(z=sw * 0.275).transformed(rot_y(72 * k)).moved(y=0.05)
            a.add("base", frame, leg)
    else:
        leg_w = a.u(0.025, 0.05)
        round_legs = a.chance(0.4)
        splay = a.u(0.0, 0.04)
        for sx in (1, -1):
            for sz in (1, -1):
                px, pz = sx * (sw / 2 - leg_w), sz * (sd / 2 - leg_w)
                if round_legs:
                    leg = cylinder(leg_w / 2, seat_y - st, 12, radius_top=leg_w / 2 * 1.1)
                    leg = leg.transformed(rot_z(sx * np.degrees(splay)) @ rot_x(-sz * np.degrees(splay)))
                else:
                    leg = box(leg_w, seat_y - st, leg_w).moved(y=(seat_y - st) / 2)
                a.add("leg", frame, leg.moved(x=px, z=pz))
    back_h, back_t = a.u(0.3, 0.55), a.u(0.025, 0.06)
    tilt = a.u(0, 15)
    back_parts = []
    if a.chance(0.5):
        back_parts.append(box(sw, back_h, back_t).moved(y=back_h / 2))
    else:
        slats = int(a.rng.integers(3, 6))
        for k in range(slats):
            x = -sw / 2 + sw * (k + 0.5) / slats
            back_parts.append(box(sw / slats * 0.45, back_h * 0.85, back_t).moved(x=x, y=back_h * 0.425))
        back_parts.append(box(sw, back_h * 0.15, back_t).moved(y=back_h * 0.925))
    for p in back_parts:  # the back rises at the rear (+Z) edge, tilted backwards
        a.add("back", frame, p.transformed(rot_x(tilt)).moved(y=seat_y, z=sd / 2 - back_t / 2))
    if a.chance(0.3):
        arm_h = a.u(0.18, 0.26)
        for sx in (1, -1):
            a.add("arm", frame, box(0.05, 0.04, sd * 0.9).moved(x=sx * (sw / 2 - 0.025), y=seat_y + arm_h))
            a.add("arm_support", frame, box(0.03, arm_h, 0.03).moved(x=sx * (sw / 2 - 0.025), y=seat_y + arm_h / 2,
                                                                    z=-sd * 0.35))


def table(a: Assembly) -> None:
    height, top_t = a.u(0.42, 0.8), a.u(0.03, 0.07)
    top = a.material(a.color("wood", "oak", "white", "dark", "brown"), texture="wood" if a.chance(0.6) else None)
    legs = a.material(a.color("dark", "silver", "wood", "brown", "white"))
    round_top = a.chance(0.3)
    if round_top:
        radius = a.u(0.4, 0.7)
        a.add("top", top, cylinder(radius, top_t, 40).moved(y=height - top_t))
        half_x = half_z = radius * 0.6
    else:
        w, d = a.u(0.8, 2.0), a.u(0.6, 1.0)
        a.add("top", top, box(w, top_t, d).moved(y=height - top_t / 2))
        half_x, half_z = w / 2 - 0.06, d / 2 - 0.06
    if round_top and a.chance(0.6):
        a.add("pedestal", legs, cylinder(a.u(0.03, 0.07), height - top_t, 20).moved(y=0))
        a.add("foot", legs, cylinder(half_x * a.u(0.6, 0.9), 0.03, 32))
        return
    leg_w = a.u(0.03, 0.07)
    for sx in (1, -1):
        for sz in (1, -1):
            a.add("leg", legs, box(leg_w, height - top_t, leg_w).moved(x=sx * half_x, y=(height - top_t) / 2, z=sz * half_z))
    if a.chance(0.5):
        apron_h = a.u(0.06, 0.12)
        y = height - top_t - apron_h / 2
        a.add("apron", legs, box(2 * half_x, apron_h, 0.02).moved(y=y, z=half_z),
              box(2 * half_x, apron_h, 0.02).moved(y=y, z=-half_z),
              box(0.02, apron_h, 2 * half_z).moved(x=half_x, y=y), box(0.02, apron_h, 2 * half_z).moved(x=-half_x, y=y))


def lamp(a: Assembly) -> None:
    base = a.material(a.color("dark", "silver", "white", "brown"))
    pole_mat = a.material(a.color("silver", "dark", "grey"))
    glass_shade = a.chance(0.3)
    shade = a.material(a.color("cream", "white", "red", "green", "yellow") if not glass_shade else PALETTE["glass"],
                       GLASS_OPACITY if glass_shade else 1.0,
                       texture="fabric" if (not glass_shade and a.chance(0.35)) else None)
    base_r = a.u(0.08, 0.18)
    base_h = a.u(0.02, 0.06)
    if a.chance(0.7):
        a.add("base", base, cylinder(base_r, base_h, 32, radius_top=base_r * a.u(0.6, 1.0)))
    else:
        a.add("base", base, box(base_r * 2, base_h, base_r * 1.6).moved(y=base_h / 2))
    pole_h = a.u(0.3, 0.8)
    if a.chance(0.35):  # bent arm: up, then leaning forward (-Z)
        lean = a.u(0.1, 0.3)
        t = np.linspace(0, 1, 12)
        path = np.stack([0 * t, base_h + pole_h * t, -lean * t**2], axis=1)
        a.add("arm", pole_mat, tube(path, 0.012))
        head = np.array([0.0, base_h + pole_h, -lean])
    else:
        a.add("pole", pole_mat, cylinder(0.012, pole_h, 12).moved(y=base_h))
        head = np.array([0.0, base_h + pole_h, 0.0])
    rb, h, th = a.u(0.1, 0.25), a.u(0.12, 0.3), 0.006
    rt = rb * a.u(0.4, 0.9)
    shell = lathe([(rb, 0), (rt, h), (rt - th, h), (rb - th, 0)], 32, uv_scale=4.0)
    a.add("shade", shade, shell.moved(head[0], head[1] - h * 0.6, head[2]))
    if a.chance(0.5):
        bulb = a.material((1.0, 0.97, 0.85))
        a.add("bulb", bulb, sphere(min(rt, rb) * 0.35, 16, 8).moved(head[0], head[1] - h * 0.25, head[2]))


def mug(a: Assembly) -> None:
    r, h = a.u(0.04, 0.055), a.u(0.08, 0.12)
    th, bottom = a.u(0.004, 0.008), a.u(0.006, 0.012)
    rt = r * a.u(0.9, 1.15)
    body = a.material(a.color("white", "cream", "red", "blue", "dark", "teal", "yellow"))
    handle = a.material(a.color("white", "cream", "red", "blue", "dark", "teal", "yellow"))
    cup = [(0, 0), (r, 0), (rt, h), (rt - th, h), (r - th + (rt - r) * bottom / h, bottom), (0, bottom)]
    a.add("cup", body, lathe(cup, 40, uv_scale=10.0))
    if a.chance(0.5):
        band = a.material(a.color("white", "cream"), texture=str(a.rng.choice(["label", "stripes", "checker"])))
        lo, hi = h * a.u(0.15, 0.35), h * a.u(0.65, 0.85)
        a.add("print", band, _band(r + (rt - r) * lo / h, r + (rt - r) * hi / h, lo, hi, 40))
    hr = h * a.u(0.25, 0.38)
    reach = a.u(1.0, 1.5)
    ang = np.linspace(-np.pi / 2 * 0.85, np.pi / 2 * 0.85, 16)
    path = np.stack([r * 0.9 + hr * reach * np.cos(ang), h * 0.5 + hr * np.sin(ang), 0 * ang], axis=1)
    a.add("handle", handle, tube(path, a.u(0.005, 0.009), 12))


def bottle(a: Assembly) -> None:
    r, h = a.u(0.03, 0.05), a.u(0.2, 0.32)
    rn = r * a.u(0.25, 0.42)
    ys, yn = h * a.u(0.45, 0.65), h * a.u(0.75, 0.85)
    glass = a.chance(0.35)
    body = a.material(a.color("green", "brown", "glass", "blue", "white") if not glass else PALETTE["glass"],
                      GLASS_OPACITY if glass else 1.0)
    cap = a.material(a.color("red", "silver", "dark", "white", "yellow"))
    t = np.linspace(0, 1, 8)[1:-1]
    shoulder = [(r + (rn - r) * (3 * s**2 - 2 * s**3), ys + (yn - ys) * s) for s in t]
    profile = [(0, 0), (r * 0.94, 0), (r, h * 0.02), (r, ys)] + shoulder + [(rn, yn), (rn, h * 0.97),
                                                                             (rn * 1.12, h * 0.975), (rn * 1.12, h), (0, h)]
    a.add("body", body, lathe(profile, 32, uv_scale=8.0))
    if a.chance(0.7):
        a.add("cap", cap, cylinder(rn * 1.2, h * 0.07, 20).moved(y=h * 0.95))
    if a.chance(0.55):
        label = a.material(a.color("white", "cream", "yellow", "red"), texture="label")
        lo, hi = h * a.u(0.12, 0.2), min(ys, h * a.u(0.4, 0.55))
        a.add("label", label, _band(r, r, lo, hi, 32))


def sofa(a: Assembly) -> None:
    w, d = a.u(1.4, 2.4), a.u(0.75, 1.0)
    seat_y, arm_y, back_y = a.u(0.38, 0.48), a.u(0.55, 0.7), a.u(0.75, 1.0)
    arm_t, back_t = a.u(0.1, 0.25), a.u(0.15, 0.25)
    fabric = a.material(a.color("grey", "blue", "green", "brown", "cream", "red", "teal"),
                        texture=str(a.rng.choice(["fabric", "checker"])) if a.chance(0.5) else None)
    cushion = a.material(a.color("grey", "blue", "green", "brown", "cream", "red", "teal"))
    legs = a.material(a.color("dark", "wood", "silver"))
    leg_h = a.u(0.04, 0.14)
    base_h = seat_y - leg_h - 0.12
    a.add("base", fabric, box(w, base_h, d).moved(y=leg_h + base_h / 2))
    n = int(a.rng.integers(2, 4))
    inner = w - 2 * arm_t
    seat_d = d - back_t
    for k in range(n):
        x = -inner / 2 + inner * (k + 0.5) / n
        a.add("seat_cushion", cushion, box(inner / n - 0.01, 0.12, seat_d).moved(x=x, y=seat_y - 0.06, z=-back_t / 2))
    a.add("back", fabric, box(w, back_y - leg_h, back_t).moved(y=leg_h + (back_y - leg_h) / 2, z=d / 2 - back_t / 2))
    for sx in (1, -1):
        a.add("arm", fabric, box(arm_t, arm_y - leg_h, d).moved(x=sx * (w / 2 - arm_t / 2), y=leg_h + (arm_y - leg_h) / 2))
    for sx in (1, -1):
        for sz in (1, -1):
            a.add("leg", legs, cylinder(0.025, leg_h, 12, radius_top=0.03).moved(x=sx * (w / 2 - 0.06), z=sz * (d / 2 - 0.06)))


# Synset id -> (generator); real ShapeNetCore.v2 ids.
GENERATORS: dict[str, Callable[[Assembly], None]] = {
    "02691156": airplane,
    "02876657": bottle,
    "02958343": car,
    "03001627": chair,
    "03636649": lamp,
    "03797390": mug,
    "04256520": sofa,
    "04379243": table,
}
