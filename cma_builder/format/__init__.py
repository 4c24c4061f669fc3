"""The on-disk dataset format, owned here alone: the array schema (:mod:`.schema`), the shard
writer (:mod:`.writer`), the fast shard-file reader (:mod:`.shards`) and the one dataset reader
(:mod:`.reader`). Imports neither Blender (bpy) nor torch."""

from cma_builder.format.schema import (ARRAYS, DIMENSIONS, FORMAT, INDEX_COLUMNS, SPLIT_CODES, describe,
                                       dimension_names, label_names, read_attrs, shard_names)
from cma_builder.format.shards import ShardArray
from cma_builder.format.writer import Dataset, State, add_dimension_names, consolidate, write_index
from cma_builder.format.reader import DatasetReader, ObjectRef, ZarrArray, ref

__all__ = ["ARRAYS", "DIMENSIONS", "FORMAT", "INDEX_COLUMNS", "SPLIT_CODES", "describe", "dimension_names",
           "label_names", "read_attrs", "shard_names", "ShardArray", "Dataset", "State", "add_dimension_names",
           "consolidate", "write_index", "DatasetReader", "ObjectRef", "ZarrArray", "ref"]
