"""Reading shards back: a file-level reader and the torch Dataset training code imports."""

from .audio import audio_for_frames, log_mel
from .collate import flow_to_pixels, pad_collate
from .reader import ShardFile
from .shard_dataset import ShardDataset

__all__ = ["ShardDataset", "ShardFile", "audio_for_frames", "flow_to_pixels", "log_mel", "pad_collate"]
