"""Data: sources (files, builtin generators), splits, preprocessing and augmentation."""

from .augment import augment_batch
from .dataset import Dataset, Split, load_dataset

__all__ = ["Dataset", "Split", "augment_batch", "load_dataset"]
