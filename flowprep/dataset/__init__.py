"""Reading shards back: a file-level reader and the torch Dataset training code imports."""

from .reader import ShardFile
from .shard_dataset import ShardDataset

__all__ = ["ShardDataset", "ShardFile"]
