"""Reading shards back: the torch Dataset training code imports, its collation and audio features
(the file-level reader, ShardFile, lives next to the writer in flowprep.shards)."""

from ..shards.reader import ShardFile
from .audio import audio_for_frames, log_mel
from .collate import flow_to_pixels, pad_collate
from .shard_dataset import ShardDataset

__all__ = ["ShardDataset", "ShardFile", "audio_for_frames", "flow_to_pixels", "log_mel", "pad_collate"]
