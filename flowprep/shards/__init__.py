"""HDF5 shards: the on-disk format, the atomic writer, the manifest and the failure ledger."""

from .layout import FORMAT_VERSION, shard_name
from .manifest import Manifest, ShardEntry
from .records import ClipFailure, ClipResult
from .writer import ShardSummary, write_shard

__all__ = [
    "FORMAT_VERSION",
    "ClipFailure",
    "ClipResult",
    "Manifest",
    "ShardEntry",
    "ShardSummary",
    "shard_name",
    "write_shard",
]
