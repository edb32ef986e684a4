"""HDF5 shards: the on-disk format (schema.py, one table), the atomic writer and the reader, the
manifest and the failure ledger."""

from .layout import FORMAT_VERSION, shard_name
from .manifest import Manifest, ShardEntry
from .reader import ShardFile
from .records import ClipFailure, ClipResult
from .schema import SCHEMA
from .writer import ShardSummary, write_shard

__all__ = [
    "FORMAT_VERSION",
    "ClipFailure",
    "ClipResult",
    "Manifest",
    "SCHEMA",
    "ShardEntry",
    "ShardFile",
    "ShardSummary",
    "shard_name",
    "write_shard",
]
