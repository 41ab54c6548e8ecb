"""Named data sets (offline first), class subsets, limits, splits and batches."""

from .adapt import InputAdapter
from .images import DataSplits, ImageSet
from .loader import BatchLoader, Shard
from .prepare import DataConfig, PreparedData, prepare_data
from .selection import limit, parse_classes, select_classes, split_validation
from .sources import SourceOptions, list_datasets, load_splits, register_dataset

__all__ = [
    "BatchLoader",
    "DataConfig",
    "DataSplits",
    "ImageSet",
    "InputAdapter",
    "PreparedData",
    "Shard",
    "SourceOptions",
    "limit",
    "list_datasets",
    "load_splits",
    "parse_classes",
    "prepare_data",
    "register_dataset",
    "select_classes",
    "split_validation",
]
