"""``cma-build stats``: what a dataset holds. Objects per category and split, failures by
reason, bytes per object (per array, from the shard files), points per view and timings."""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cma_builder.atomic import atomic_write, check_output_file, ensure_parent
from cma_builder.progress import progress
from cma_builder.format import DatasetReader

SPLITS = ("train", "val", "test")


@dataclass
class Stats:
    dataset: Path
    settings: dict
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # category -> split/status
    failures: Counter = field(default_factory=Counter)  # reason -> objects
    failure_examples: dict[str, str] = field(default_factory=dict)  # reason -> one object
    shards: int = 0
    objects_in_shards: int = 0
    bytes_per_array: Counter = field(default_factory=Counter)
    bytes_total: int = 0
    view_foreground: list[np.ndarray] = field(default_factory=list)
    visible: list[np.ndarray] = field(default_factory=list)  # fused points visible per (object, view)
    fused_count: list[np.ndarray] = field(default_factory=list)
    seconds_total: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        fg = np.concatenate(self.view_foreground).ravel() if self.view_foreground else np.zeros(0)
        vis = np.concatenate(self.visible).ravel() if self.visible else np.zeros(0)
        n = max(self.objects_in_shards, 1)
        return {
            "dataset": str(self.dataset),
            "objects": {cat: dict(c) for cat, c in sorted(self.counts.items())},
            "failures_by_reason": dict(self.failures.most_common()),
            "shards": self.shards,
            "bytes_total": self.bytes_total,
            "bytes_per_object": self.bytes_total / n,
            "bytes_per_object_by_array": {k: v / n for k, v in self.bytes_per_array.most_common()},
            "view_foreground": _summary(fg),
            "fused_visible_per_view": _summary(vis),
            "views_below_view_points": float((fg < self.settings["view_points"]).mean()) if fg.size else None,
            "seconds_per_object": _summary(np.asarray(self.seconds_total)),
        }


def _summary(x: np.ndarray) -> dict | None:
    if x.size == 0:
        return None
    return {"min": float(x.min()), "median": float(np.median(x)), "mean": float(x.mean()), "max": float(x.max())}


def reason(error: str) -> str:
    """Group failure messages: drop the parenthesized details; scan failures by problem code."""
    text = re.sub(r"\s*\(.*$", "", error or "").strip() or "unknown"
    if text.startswith("scan: "):
        codes = sorted({p.split(":")[0].strip() for p in text[6:].split(" | ")})
        return "scan: " + ", ".join(codes)
    return text[:80]


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def stats(path: str | os.PathLike, show_progress: bool = True) -> Stats:
    reader = DatasetReader.open(path)
    rows = reader.index_rows()
    reader.verify(reader.objects(rows), reader.shard_names())  # every shard is read below
    out = Stats(reader.root, reader.attrs["settings"])
    for r in rows:
        cat = r.get("category") or r["synset_id"]
        c = out.counts[cat]
        c[r["status"]] += 1
        if r["status"] == "done":
            c[r.get("split", "?")] += 1
            try:
                out.seconds_total.append(float(r.get("seconds_total") or "nan"))
            except ValueError:
                pass
        else:
            key = f"{r['status']}: {reason(r.get('error', ''))}"
            out.failures[key] += 1
            out.failure_examples.setdefault(key, f"{r['synset_id']}/{r['model_id']}")
    out.seconds_total = [s for s in out.seconds_total if np.isfinite(s)]
    names = reader.shard_names()
    out.shards = len(names)
    for name in progress(names, desc="stats", unit="shard", enabled=show_progress):
        shard_dir = reader.root / "shards" / name
        for entry in shard_dir.iterdir():
            if entry.is_dir():
                out.bytes_per_array[entry.name] += _dir_bytes(entry)
        out.bytes_total += _dir_bytes(shard_dir)
        fg = reader.read_shard(name, "view_foreground")
        out.objects_in_shards += fg.shape[0]
        out.view_foreground.append(fg)
        out.visible.append(reader.read_shard(name, "fused_visible").sum(axis=1))
        out.fused_count.append(reader.read_shard(name, "fused_point_count"))
    return out


def write_json(s: Stats, path: str | os.PathLike) -> Path:
    """The numbers as JSON at ``path`` (atomically: a complete file or none)."""
    path = check_output_file(path, "--json", "stats.json")
    with atomic_write(ensure_parent(path)) as fh:
        json.dump(s.to_json(), fh, indent=1)
    return path


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary_lines(s: Stats) -> list[str]:
    j = s.to_json()
    st = s.settings
    lines = [f"Dataset {s.dataset}: {st['resolution']}x{st['resolution']} px, {st['viewpoints']['views']} views, "
             f"{st['view_points']} points per view, {st['fused_points']} fused points"]
    header = f"{'category':<16} {'done':>6} {'train':>6} {'val':>6} {'test':>6} {'failed':>7} {'skipped':>8}"
    lines += ["", header, "-" * len(header)]
    total = Counter()
    for cat, c in sorted(s.counts.items()):
        total.update(c)
        lines.append(f"{cat:<16} {c['done']:>6} {c['train']:>6} {c['val']:>6} {c['test']:>6} {c['failed']:>7} "
                     f"{c['skipped']:>8}")
    lines.append(f"{'total':<16} {total['done']:>6} {total['train']:>6} {total['val']:>6} {total['test']:>6} "
                 f"{total['failed']:>7} {total['skipped']:>8}")
    lines += ["", "Failures by reason:" if s.failures else "Failures: none"]
    for key, n in s.failures.most_common():
        lines.append(f"  {n:>6}  {key}  (e.g. {s.failure_examples[key]})")
    lines += ["", f"Storage: {_human(s.bytes_total)} in {s.shards} shards, {_human(j['bytes_per_object'])} per object:"]
    small = 0.0
    for name, b in j["bytes_per_object_by_array"].items():
        if b >= 1024:
            lines.append(f"  {name:<22} {_human(b):>10}")
        else:
            small += b
    if small:
        lines.append(f"  {'(other arrays)':<22} {_human(small):>10}")
    fg, vis = j["view_foreground"], j["fused_visible_per_view"]
    if fg:
        lines += ["", "Points per view (min / median / mean / max over object views):",
                  f"  foreground pixels (back-projected points) {fg['min']:.0f} / {fg['median']:.0f} / "
                  f"{fg['mean']:.0f} / {fg['max']:.0f}; {j['views_below_view_points'] * 100:.1f}% of views have fewer "
                  f"than {st['view_points']} (their per-view cloud repeats points)",
                  f"  fused points visible                      {vis['min']:.0f} / {vis['median']:.0f} / "
                  f"{vis['mean']:.0f} / {vis['max']:.0f} of {st['fused_points']}"]
    if j["seconds_per_object"]:
        t = j["seconds_per_object"]
        lines.append(f"Render time per object (worker): median {t['median']:.2f} s, mean {t['mean']:.2f} s, "
                     f"max {t['max']:.2f} s")
    return lines
