"""Datasets: the :class:`BeamDataset` schema, save/load with validation, splits, simulator and importers."""

from .dataset import BeamDataset, DatasetError, FIELDS, SCHEMA_VERSION, atomic_write, load_dataset, save_dataset

__all__ = ["BeamDataset", "DatasetError", "FIELDS", "SCHEMA_VERSION", "atomic_write", "load_dataset", "save_dataset"]
