"""Datasets: the :class:`BeamDataset` schema, save/load with validation, splits, shard folders and streaming,
simulator and importers."""

from .dataset import BeamDataset, DatasetError, FIELDS, SCHEMA_VERSION, atomic_write, load_dataset, save_dataset
from .shards import ShardedDataset, ShardSpec, generate_shard, open_dataset, write_shards

__all__ = ["BeamDataset", "DatasetError", "FIELDS", "SCHEMA_VERSION", "atomic_write", "load_dataset", "save_dataset",
           "ShardSpec", "ShardedDataset", "generate_shard", "open_dataset", "write_shards"]
