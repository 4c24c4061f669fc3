"""Run configs: a method's bundled YAML defaults, merged with a user file and ``--set`` overrides.

Every key a user gives must exist in the method's defaults (a typo is a one-line error, never a
silently ignored setting), and every value is checked before any work (``validate``): it must have the
type of the bundled default (an integer where a number is expected is fine; a few keys take another
type too, see ``ALSO``), numbers must be finite and within the range of ``RANGES``. Bundled configs live in ``pcssl_train/configs``: ``<method>.yaml``
(published settings) and ``<method>-tiny.yaml`` (a few-second CPU run for tests and smoke checks).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import yaml

from ..configs import CONFIG_DIR, bundled
from ..data import Augment
from ..errors import TrainError
from ..methods import method_class
from ..methods.perturb import OVERLAPS


def bundled_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise TrainError(f"{path}: cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise TrainError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise TrainError(f"{path}: a config must be a YAML mapping")
    return data


def resolve_file(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise TrainError(f"config {name_or_path!r}: is a folder; expected a YAML file or a bundled config name")
    bundled = CONFIG_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    raise TrainError(f"config {name_or_path!r}: no such file or bundled config (bundled: {', '.join(bundled_configs())})")


def merge(base: dict, update: dict, where: str = "") -> dict:
    """Recursive merge; keys of ``update`` must already be in ``base``."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in base:
            raise TrainError(f"unknown config key {path!r}; allowed here: {', '.join(map(str, base))}")
        if isinstance(base[key], dict) and base[key] and isinstance(value, dict):
            out[key] = merge(base[key], value, path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict:
    """``optim.lr=3e-4`` -> {"optim": {"lr": 0.0003}} (the value is parsed as YAML)."""
    if "=" not in text:
        raise TrainError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    key, value = text.split("=", 1)
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise TrainError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. optim.lr=3e-4")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    try:
        cur[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise TrainError(f"--set {text!r}: value is not valid YAML") from None
    return node


def load_config(method: str | None, config: str | None = None, overrides: tuple[str, ...] = ()) -> dict:
    """The full config of a run. ``method`` may come from the config file's ``method`` key."""
    user = read_yaml(resolve_file(config)) if config else {}
    name = method or user.get("method")
    if not name:
        raise TrainError("no method: pass --method NAME or a config with a 'method' key")
    cls = method_class(name)
    if user.get("method") and method_class(user["method"]) is not cls:
        raise TrainError(f"--method {name} but the config is for {user['method']}")
    cfg = bundled(cls.name)
    cfg = merge(cfg, {k: v for k, v in user.items() if k not in ("method", "init")})
    for text in overrides:
        cfg = merge(cfg, parse_override(text))
    cfg["method"] = cls.name
    validate(cfg)
    if user.get("init"):
        cfg["init"] = str(user["init"])   # weights to start from (pretrain --init), kept in the run's config
    return cfg


# --- validation ---------------------------------------------------------------------------------
# Ranges by key name (the last part of the dotted key, whatever the section): (low, high, low_open,
# high_open); None = unbounded. Every number in the bundled configs has an entry (a test checks).
POSITIVE = (0, None, True, False)        # sizes, counts, rates: 0 cannot be right
NON_NEGATIVE = (0, None, False, False)   # 0 means "off" / "none"
UNIT = (0, 1, False, False)              # probabilities and strengths in [0, 1]
FRACTION = (0, 1, False, True)           # [0, 1)
OPEN_FRACTION = (0, 1, True, True)       # (0, 1)
RANGES: dict[str, tuple] = {
    **dict.fromkeys((
        "num_group", "group_size", "width", "depth", "num_heads", "decoder_depth", "decoder_heads", "image_size",
        "patch_size", "image_depth", "image_heads", "image_width", "gsa_depth", "lmr_cross_depth", "lmr_self_depth",
        "proj_hidden", "proj_dim", "k", "emb_dims", "resnet_width", "resnet_layers", "views", "num_codes",
        "perturb_points", "num_points", "epochs", "batch_size", "log_every", "lr", "temperature", "scale_low",
        "scale_high"), POSITIVE),
    **dict.fromkeys((
        "weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "grad_clip", "workers", "keep_every", "seed",
        "restart_after", "alpha_cls", "alpha_rec", "feature_reg", "gsa_weight", "commitment", "codebook_weight",
        "perturb_patches", "perturb_sigma", "rotate_deg", "translate", "jitter_sigma", "jitter_clip", "cls_weights",
        "view_choice"), NON_NEGATIVE),
    **dict.fromkeys(("flip", "brightness", "contrast", "saturation", "strength_min", "strength_max"), UNIT),
    **dict.fromkeys(("drop_path", "betas"), FRACTION),
    "mask_ratio": OPEN_FRACTION,
}
# Pairs (low key, high key) of one section that must be in order.
ORDERED = (("scale_low", "scale_high"), ("strength_min", "strength_max"), ("min_lr", "lr"))
# Keys whose value may also have another type than the bundled default's (dotted keys).
ALSO: dict[str, tuple[type, ...]] = {
    "data.split": (list,),               # "train" | "val" | "test" | "all" | a list of them
    "data.categories": (str, list),      # null (all) | a name or synset id | a list of them
    "data.view_choice": (int,),          # "random" | "max-points" | a view index
    "data.augment": (type(None),),       # null: no augmentation
    "model.cls_weights": (type(None),),  # null: unweighted cross-entropy
}
# Keys whose list values are lists of names (strings).
NAME_LISTS = ("data.split", "data.categories")
# Sections that are null in some bundled configs: what a user-given mapping is checked against.
DICT_DEFAULTS = {"data.augment": lambda: {f.name: f.default for f in __import__("dataclasses").fields(Augment)}}
# String keys with a closed set of values that nothing downstream would refuse (a typo would be ignored).
CHOICES: dict[str, tuple[str, ...]] = {"train.amp": ("bf16", "none"), "model.perturb_overlap": OVERLAPS}
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")   # YAML 1.1 reads 3e-4 as a string

TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
              dict: "a mapping", type(None): "null"}


def _type_name(t: type) -> str:
    return TYPE_NAMES.get(t, t.__name__)


def _fits(value, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _bound(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _check_range(key: str, leaf: str, value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise TrainError(f"config key {key}: must be a finite number, got {value}")
    rng = RANGES.get(leaf)
    if rng is None:
        return
    low, high, low_open, high_open = rng
    ok = ((low is None or (value > low if low_open else value >= low))
          and (high is None or (value < high if high_open else value <= high)))
    if not ok:
        if high is None:
            need = f"> {_bound(low)}" if low_open else f">= {_bound(low)}"
        else:
            need = f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
        raise TrainError(f"config key {key}: must be {need}, got {value!r}")


def _check_value(key: str, value, default):
    """``value`` checked against the bundled ``default``; returns it (a number written as 3e-4, which
    YAML reads as a string, becomes a float)."""
    leaf = key.rsplit(".", 1)[-1]
    also = ALSO.get(key, ())
    if default is None and value is not None and also and not any(_fits(value, t) for t in also):
        raise TrainError(f"config key {key}: expected {' or '.join(_type_name(t) for t in also)} or null, "
                         f"got {value!r}")
    if default is None or (also and any(_fits(value, t) for t in also)):
        expected = type(value)
    else:
        expected = type(default)
    if expected is float and isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        value = float(value)
    if not _fits(value, expected):
        want = " or ".join(_type_name(t) for t in (expected, *also))
        raise TrainError(f"config key {key}: expected {want}, got {value!r}")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        _check_range(key, leaf, value)
    elif isinstance(value, str) and key in CHOICES and value not in CHOICES[key]:
        raise TrainError(f"config key {key}: expected one of {', '.join(CHOICES[key])}, got {value!r}")
    elif isinstance(value, list) and key in NAME_LISTS:
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise TrainError(f"config key {key}: expected a non-empty list of names, got {value!r}")
    elif isinstance(value, list) and isinstance(default, list) and default:
        kinds = {type(v) for v in default}
        if len(kinds) == 1 and kinds <= {int, float, bool}:   # a fixed-size tuple of numbers (betas, layers)
            if len(value) != len(default):
                raise TrainError(f"config key {key}: expected a list of {len(default)} values like the default "
                                 f"{default!r}, got {value!r}")
            value = [_check_value(f"{key}[{i}]", v, default[i]) for i, v in enumerate(value)]
            for v in value:
                _check_range(key, leaf, v)
    return value


def _validate(section: dict, defaults: dict, where: str) -> None:
    unknown = [k for k in section if k not in defaults and f"{where}{k}" not in ("method", "init")]
    if unknown:
        raise TrainError(f"unknown config key {where + str(unknown[0])!r}; allowed here: {', '.join(map(str, defaults))}")
    for key, default in defaults.items():
        if key not in section:
            continue
        path = f"{where}{key}"
        value = section[key]
        if default is None and value is not None and path in DICT_DEFAULTS:
            default = DICT_DEFAULTS[path]()     # a section that is off (null) by default, given by the user
        if isinstance(default, dict):
            if value is None and type(None) in ALSO.get(path, ()):
                continue
            if not isinstance(value, dict):
                null = " (or null)" if type(None) in ALSO.get(path, ()) else ""
                raise TrainError(f"config key {path}: expected a mapping of {', '.join(map(str, default))}{null}, "
                                 f"got {value!r}")
            _validate(value, default, path + ".")
        else:
            section[key] = _check_value(path, value, default)
    for low, high in ORDERED:
        a, b = section.get(low), section.get(high)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > b:
            raise TrainError(f"config keys {where}{low} and {where}{high}: {low} ({a!r}) must not exceed "
                             f"{high} ({b!r})")


def validate(cfg: dict) -> dict:
    """Check every value of a full config (``load_config``'s) against the method's bundled defaults:
    types, finite numbers, ranges, and what must agree across keys. Raises TrainError (one line);
    returns ``cfg`` (numbers written as strings converted in place)."""
    cls = method_class(cfg["method"])
    defaults = bundled(cls.name)
    _validate(cfg, {k: v for k, v in defaults.items() if k != "method"}, "")
    model, data = cfg.get("model", {}), cfg.get("data", {})
    if "views" in model and "views" in data and model["views"] != data["views"]:
        raise TrainError(f"config keys model.views ({model['views']}) and data.views ({data['views']}) must be equal")
    points = data.get("num_points")
    for key in ("num_group", "group_size") if model.get("point_encoder", "transformer") == "transformer" else ("k",):
        if isinstance(model.get(key), int) and isinstance(points, int) and model[key] > points:
            raise TrainError(f"config key model.{key} ({model[key]}) exceeds data.num_points ({points})")
    return cfg


def config_diff(a: dict, b: dict, where: str = "") -> list[str]:
    """Keys whose values differ between two configs (dotted paths)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{where}{key}.")
        elif va != vb:
            out.append(f"{where}{key}: {va!r} vs {vb!r}")
    return out
