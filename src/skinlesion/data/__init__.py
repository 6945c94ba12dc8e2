"""Data layer: metadata reading and validation, image decoding, splits, synthetic demo data."""
from .metadata import DataError, LoadedDataset, find_images, load_dataset, read_metadata

__all__ = ["DataError", "LoadedDataset", "find_images", "load_dataset", "read_metadata"]
