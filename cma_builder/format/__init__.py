"""The on-disk dataset format: the array schema, the shard writer and the reader."""
