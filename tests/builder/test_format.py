"""The format package on the stored golden dataset: the fast shard path equals plain zarr for
every array, and a damaged shard index is refused (as zarr refuses it), so validate reports it."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from cma_builder.checks.validate import validate
from cma_builder.errors import CmaError
from cma_builder.format import DatasetReader, ShardArray
from golden.make_golden import GOLDEN


def test_the_fast_path_reads_what_zarr_reads():
    reader = DatasetReader.open(GOLDEN)
    for obj in reader.objects():
        group = zarr.open_group(GOLDEN / "shards" / obj.shard, mode="r", use_consolidated=False)
        for name in reader.array_names():
            if isinstance(reader.array(obj.shard, name), ShardArray):
                assert np.array_equal(reader.read(obj, name), group[name][obj.row]), (obj.key, name)


def test_a_damaged_shard_index_is_refused_and_validate_reports_it(golden_copy):
    obj = DatasetReader.open(golden_copy).objects()[0]
    shard_file = next(p for p in (golden_copy / "shards" / obj.shard / "fused_points" / "c").rglob("*") if p.is_file())
    data = bytearray(shard_file.read_bytes())
    data[len(data) - 4 - 16 + 8] ^= 1  # one bit of the last chunk's byte count in the index
    shard_file.write_bytes(bytes(data))
    with pytest.raises(Exception, match="checksum"):  # zarr itself refuses it
        zarr.open_group(golden_copy / "shards" / obj.shard, mode="r", use_consolidated=False)["fused_points"][obj.row]
    with pytest.raises(CmaError, match="fused_points: unreadable at row 0 .*checksums do not match"):  # one line
        DatasetReader.open(golden_copy).read(obj, "fused_points")
    report = validate(golden_copy, show_progress=False, workers=1)
    assert not report.passed
    assert any("checksums do not match" in str(f.get("detail")) for f in report.failures)
