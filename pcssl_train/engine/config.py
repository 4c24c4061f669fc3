"""Run configs: a method's bundled YAML defaults, merged with a user file and ``--set`` overrides.

Every key a user gives must exist in the method's defaults (a typo is a one-line error, never a
silently ignored setting). Bundled configs live in ``pcssl_train/configs``: ``<method>.yaml``
(published settings) and ``<method>-tiny.yaml`` (a few-second CPU run for tests and smoke checks).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ..errors import TrainError
from ..methods import method_class

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


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
    cfg = read_yaml(CONFIG_DIR / f"{cls.name}.yaml")
    cfg = merge(cfg, {k: v for k, v in user.items() if k not in ("method", "init")})
    for text in overrides:
        cfg = merge(cfg, parse_override(text))
    cfg["method"] = cls.name
    if user.get("init"):
        cfg["init"] = str(user["init"])   # weights to start from (pretrain --init), kept in the run's config
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
