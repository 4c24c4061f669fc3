import hashlib
import json
import re

import pytest

from cma_builder.errors import CmaError
from cma_builder.source.splits import SplitSpec
from cma_builder.source.taxonomy import Taxonomy


def test_bundled_taxonomy_has_the_55_v2_synsets():
    tax = Taxonomy.bundled()
    assert len(tax.synsets) == 55
    assert all(re.fullmatch(r"\d{8}", s) for s in tax.synsets)
    assert tax.top_level_ids == sorted(tax.synsets)
    expected = {"02691156": "airplane", "03001627": "chair", "04379243": "table", "02958343": "car",
                "03797390": "mug", "02876657": "bottle", "03636649": "lamp", "04256520": "sofa",
                "03928116": "piano", "04554684": "washer", "02747177": "ashcan"}
    for sid, name in expected.items():
        assert tax.category_name(sid) == name
    assert tax.category_name("12345678") == "unknown"


def test_resolve_names_synonyms_ids_in_order():
    tax = Taxonomy.bundled()
    assert tax.resolve(["chair", "04379243", "Aeroplane", "couch", "chair"]) == ["03001627", "04379243", "02691156", "04256520"]
    assert tax.resolve(["trash bin"]) == ["02747177"]


def test_resolve_rejects_unknown_and_ambiguous_with_one_line_messages():
    tax = Taxonomy.bundled()
    with pytest.raises(CmaError, match=r"unknown category 'chiar'.*did you mean: chair"):
        tax.resolve(["chiar"])
    with pytest.raises(CmaError, match=r"ambiguous category 'phone'.*03261776.*04401088"):
        tax.resolve(["phone"])
    with pytest.raises(CmaError, match="unknown synset id '99999999'"):
        tax.resolve(["99999999"])
    assert tax.resolve(["99999999"], present_ids=["99999999"]) == ["99999999"]


def test_tree_taxonomy_overrides_bundled_names(tmp_path):
    (tmp_path / "taxonomy.json").write_text(json.dumps([{"synsetId": "03001627", "name": "seat,chair", "children": []}]))
    tax = Taxonomy.for_root(tmp_path)
    assert tax.category_name("03001627") == "seat"
    assert tax.category_name("04379243") == "table"  # still known from the bundled copy
    assert tax.source.endswith("taxonomy.json")
    (tmp_path / "taxonomy.json").write_text("{not json")
    with pytest.raises(CmaError, match="not a readable taxonomy.json"):
        Taxonomy.for_root(tmp_path)


def test_split_matches_documented_formula_and_ratios():
    spec = SplitSpec.bundled()
    assert spec.seed == 0 and dict(spec.ratios) == {"train": 0.8, "val": 0.1, "test": 0.1}
    ids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(20000)]
    counts = {"train": 0, "val": 0, "test": 0}
    for mid in ids:
        u = int.from_bytes(hashlib.sha256(f"0:{mid}".encode()).digest()[:8], "big") / 2**64
        expected = "train" if u < 0.8 else "val" if u < 0.9 else "test"
        got = spec.assign(mid)
        assert got == expected
        counts[got] += 1
    assert abs(counts["train"] / 20000 - 0.8) < 0.015
    assert abs(counts["val"] / 20000 - 0.1) < 0.01
    assert abs(counts["test"] / 20000 - 0.1) < 0.01
