"""Data layer: metadata reading and validation, image decoding, splits, synthetic demo data."""
from .metadata import find_images, read_metadata
from .dataset import LoadedDataset, load_dataset
from ..errors import DataError

__all__ = ["DataError", "LoadedDataset", "find_images", "load_dataset", "read_metadata"]
