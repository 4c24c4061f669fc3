"""ShapeNetCore.v2 taxonomy: synset ids, their WordNet names, and category filters.

A tree's own ``taxonomy.json`` is used when present; otherwise the bundled copy in
``manifests/shapenetcore_v2_taxonomy.json`` (the 55 v2 synsets).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cma_builder.errors import CmaError
from cma_builder.resources import load_json

SYNSET_ID_RE = re.compile(r"^\d{8}$")
BUNDLED_TAXONOMY = "shapenetcore_v2_taxonomy.json"


@dataclass(frozen=True)
class Synset:
    synset_id: str
    name: str  # comma-separated WordNet synonyms, as in taxonomy.json
    children: tuple[str, ...] = ()

    @property
    def short_name(self) -> str:
        """First synonym, e.g. 'airplane' for 'airplane,aeroplane,plane'."""
        return self.name.split(",")[0].strip()

    @property
    def synonyms(self) -> tuple[str, ...]:
        return tuple(s.strip().lower() for s in self.name.split(",") if s.strip())


class Taxonomy:
    """Synsets by id, plus which ones are top-level categories (not a child of another)."""

    def __init__(self, synsets: Iterable[Synset], source: str):
        self.synsets: dict[str, Synset] = {s.synset_id: s for s in synsets}
        self.source = source
        child_ids = {c for s in self.synsets.values() for c in s.children}
        self.top_level_ids = sorted(i for i in self.synsets if i not in child_ids)

    @classmethod
    def bundled(cls) -> "Taxonomy":
        return cls._from_entries(load_json(BUNDLED_TAXONOMY), source=f"bundled {BUNDLED_TAXONOMY}")

    @classmethod
    def from_file(cls, path: Path) -> "Taxonomy":
        try:
            entries = json.loads(Path(path).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CmaError(f"{path}: not a readable taxonomy.json ({exc.__class__.__name__}: {exc})") from None
        return cls._from_entries(entries, source=str(path))

    @classmethod
    def for_root(cls, root: Path) -> "Taxonomy":
        """The tree's taxonomy.json over the bundled ShapeNetCore.v2 copy: the tree's entries
        win, and every v2 category stays resolvable even when the tree's file lists fewer."""
        path = Path(root) / "taxonomy.json"
        bundled = cls.bundled()
        if not path.is_file():
            return bundled
        own = cls.from_file(path)
        return cls({**bundled.synsets, **own.synsets}.values(), source=str(path))

    @classmethod
    def _from_entries(cls, entries, source: str) -> "Taxonomy":
        ok = isinstance(entries, list) and all(
            isinstance(e, dict) and isinstance(e.get("synsetId"), str) and isinstance(e.get("name"), str)
            for e in entries
        )
        if not ok:
            raise CmaError(f"{source}: expected a JSON list of {{'synsetId', 'name', 'children'}} entries")
        return cls(
            (Synset(e["synsetId"], e["name"], tuple(e.get("children") or ())) for e in entries), source=source
        )

    def category_name(self, synset_id: str) -> str:
        s = self.synsets.get(synset_id)
        return s.short_name if s else "unknown"

    def resolve(self, tokens: Iterable[str], present_ids: Iterable[str] = ()) -> list[str]:
        """Map category names or synset ids to synset ids, in order, without duplicates.

        Names match any synonym of a top-level synset, case-insensitively. ``present_ids`` are
        synset folders found in the tree (accepted even when the taxonomy lacks them).
        Raises CmaError for unknown or ambiguous names.
        """
        present = set(present_ids)
        out: list[str] = []
        for raw in tokens:
            token = raw.strip()
            if not token:
                continue
            sid = self._resolve_one(token, present)
            if sid not in out:
                out.append(sid)
        return out

    def _resolve_one(self, token: str, present: set[str]) -> str:
        if SYNSET_ID_RE.match(token):
            if token in self.synsets or token in present:
                return token
            raise CmaError(f"unknown synset id '{token}': not in {self.source} and no such folder in the tree")
        key = token.lower()
        top = [self.synsets[i] for i in self.top_level_ids]
        matches = [s for s in top if key in s.synonyms or key == s.name.lower()]
        if len(matches) > 1:
            exact = [s for s in matches if s.short_name.lower() == key]
            matches = exact if len(exact) == 1 else matches
        if len(matches) == 1:
            return matches[0].synset_id
        if matches:
            options = ", ".join(f"{s.synset_id} ({s.short_name})" for s in matches)
            raise CmaError(f"ambiguous category '{token}': it names {options}; pass the synset id")
        vocab = sorted({syn for s in top for syn in s.synonyms})
        close = difflib.get_close_matches(key, vocab, n=3)
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise CmaError(
            f"unknown category '{token}': expected a ShapeNetCore.v2 category name or 8-digit synset id{hint}"
        )
