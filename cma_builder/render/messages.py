"""The messages between the render driver and its Blender workers (local pipes and Ray actors).

They are plain dataclasses, pickled as they are: both ends are our own processes running the
same toolkit. Driver -> worker: ``Setup`` once, then a ``RenderRequest`` per object, ``Stop``
to end. Worker -> driver: ``Ready`` once set up; for each request ``Started`` (local pipes only:
from then on a crash is that object's failure) and then ``Rendered`` or ``Failed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Setup:
    settings: dict  # RenderSettings.to_dict()
    device: str
    threads: int
    scratch: str = ""  # the worker's scratch folder (a Ray actor makes its own)


@dataclass(frozen=True)
class Ready:
    pid: int
    device: str  # the render device the worker's Blender uses
    rss_mb: float
    host: str = ""


@dataclass(frozen=True)
class RenderRequest:
    model_id: str
    obj_path: str  # the source file (any format)
    fmt: str = "obj"  # which import function of blender_scripts.importers
    up_axis: str = "+y"  # the file's up, turned to the dataset's +Y
    normalise: bool = False  # centre and scale to a unit diagonal (every layout but ShapeNet)


@dataclass(frozen=True)
class Started:
    """The worker read its request: a crash from here on is that object's failure."""


@dataclass(frozen=True)
class Stop:
    """The worker exits."""


@dataclass(frozen=True)
class Rendered:
    arrays: dict
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # seconds per stage
    rss_mb: float = 0.0  # the worker's resident memory after this object


@dataclass(frozen=True)
class Failed:
    """The object raised in the worker (the worker goes on)."""

    error: str
    traceback: str = ""  # the worker's Python traceback, kept in the run log
    timings: dict = field(default_factory=dict)  # of the stages it finished
    rss_mb: float = 0.0


Result = Rendered | Failed
