"""Reading shards back: a file-level reader and the torch Dataset training code imports."""

from .collate import flow_to_pixels, pad_collate
from .reader import ShardFile
from .shard_dataset import ShardDataset

__all__ = ["ShardDataset", "ShardFile", "flow_to_pixels", "pad_collate"]
