"""Render settings: what determines the output (hashed into every dataset and index row)
versus how a run executes (workers, device, timeouts; not hashed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from cma_builder.geometry.cameras import ViewpointSpec
from cma_builder.errors import CmaError

FORMAT_VERSION = 3  # bump when the pipeline's output changes for the same settings

NAMED_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "gray": (0.5, 0.5, 0.5), "grey": (0.5, 0.5, 0.5)}


def parse_color(text: str) -> tuple[float, float, float]:
    """'white', '#rrggbb' or 'r,g,b' in [0, 1] -> sRGB triple."""
    t = text.strip().lower()
    if t in NAMED_COLORS:
        return NAMED_COLORS[t]
    try:
        if t.startswith("#") and len(t) == 7:
            return tuple(int(t[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
        parts = tuple(float(x) for x in t.split(","))
    except ValueError:
        parts = ()
    if len(parts) == 3 and all(0.0 <= x <= 1.0 for x in parts):
        return parts
    raise CmaError(f"background '{text}': expected white, black, gray, #rrggbb or r,g,b with values in [0, 1]")


@dataclass(frozen=True)
class RenderSettings:
    """Everything that changes the rendered data. Defaults follow the issue/paper setup."""

    resolution: int = 224
    viewpoints: ViewpointSpec = field(default_factory=ViewpointSpec)
    fov: float = 40.0  # horizontal field of view, degrees
    distance: float | None = None  # camera distance in OBJ units; None fits the bounding sphere
    samples: int = 32  # Cycles samples of the RGB pass
    denoise: bool = False
    antialias: bool = True  # RGB with a 1.5 px pixel filter; depth/mask/normals are always pixel-center samples
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # sRGB behind the object in rgb
    normals: bool = False
    view_points: int = 2048
    fused_points: int = 8192
    # fused_visible: how far before a point (along the ray from the camera, as a fraction of the
    # bounding-box diagonal) a surface may be and still count as the point's own (docs/DATA_FORMAT.md)
    visibility_tolerance: float = 1e-4

    def __post_init__(self):
        checks = [(self.resolution >= 8, f"--resolution must be at least 8, got {self.resolution}"),
                  (0 < self.fov < 170, f"--fov must be in (0, 170) degrees, got {self.fov}"),
                  (self.distance is None or self.distance > 0, f"--distance must be positive, got {self.distance}"),
                  (self.samples >= 1, f"--samples must be at least 1, got {self.samples}"),
                  (self.view_points >= 1, f"--view-points must be at least 1, got {self.view_points}"),
                  (self.fused_points >= 1, f"--fused-points must be at least 1, got {self.fused_points}"),
                  (self.visibility_tolerance > 0, "--visibility-tolerance must be positive")]
        for ok, message in checks:
            if not ok:
                raise CmaError(message)

    @property
    def views(self) -> int:
        return len(self.viewpoints.poses) if self.viewpoints.scheme == "file" else self.viewpoints.views

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        vp = d["viewpoints"]
        vp["elevations"] = list(vp["elevations"])
        vp["poses"] = None if vp["poses"] is None else [list(p) for p in self.viewpoints.poses]
        d["background"] = list(self.background)
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RenderSettings":
        d = {k: v for k, v in d.items() if k != "format_version"}
        vp = dict(d.pop("viewpoints"))
        vp["elevations"] = tuple(vp["elevations"])
        if vp.get("poses") is not None:
            vp["poses"] = tuple(tuple(tuple(r) if isinstance(r, list) else r for r in p) for p in vp["poses"])
        return cls(viewpoints=ViewpointSpec(**vp), background=tuple(d.pop("background")), **d)

    def hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, stored: dict) -> list[str]:
        """'key: stored -> ours' for each setting that differs from ``stored`` (a dataset's recorded
        to_dict(), whose format_version may be older than this toolkit's)."""
        a, b = _flatten(self.to_dict()), _flatten(stored)
        return [f"{k}: {b.get(k)} -> {a.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if not isinstance(v, list) or len(v) < 8 else f"<{len(v)} entries>"
    return out


@dataclass(frozen=True)
class RenderOptions:
    """How a run executes; never changes the data (so not hashed)."""

    workers: int = 1  # 0 with the ray executor: one actor per cluster CPU / threads_per_worker
    device: str = "cpu"  # cpu | gpu (Cycles CUDA/OptiX)
    threads_per_worker: int = 1
    timeout: float = 600.0  # seconds per object
    recycle_after: int = 100  # objects per worker process before it is replaced
    max_rss_mb: int = 4096  # a worker above this resident memory is replaced after its object
    shard_size: int = 16  # objects per shard
    executor: str = "local"  # local | ray
    ray_address: str | None = None  # ray: None starts a private local instance; "auto" or HOST:PORT joins one


def default_workers(cpus: int) -> int:
    """Workers for a machine with ``cpus`` cores: one per 2 cores. Cycles (Blender 5) keeps two
    threads busy even with render.threads = 1, one of them waiting for work, so single-threaded
    workers waste half the machine (measured in docs/PERFORMANCE.md)."""
    return max(1, cpus // 2)


def threads_per_worker(cpus: int, workers: int) -> int:
    """Cycles render threads per worker: the cores per worker, and at least 2 (see default_workers)."""
    return max(min(2, cpus), cpus // workers)
