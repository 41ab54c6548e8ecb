"""Named data sets (offline first), class subsets, limits, splits and batches."""

from .adapt import InputAdapter
from .files import ImageFiles
from .images import DataSplits, ImageSet
from .loader import BatchLoader, Shard
from .prepare import DataConfig, PreparedData, prepare_data
from .selection import limit, parse_classes, select_classes, split_validation
from .sources import SourceOptions, is_present, list_datasets, load_splits, register_dataset

__all__ = [
    "BatchLoader",
    "DataConfig",
    "DataSplits",
    "ImageFiles",
    "ImageSet",
    "InputAdapter",
    "PreparedData",
    "Shard",
    "SourceOptions",
    "is_present",
    "limit",
    "list_datasets",
    "load_splits",
    "parse_classes",
    "prepare_data",
    "register_dataset",
    "select_classes",
    "split_validation",
]
