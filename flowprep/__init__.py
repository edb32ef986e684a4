"""flowprep: two-stream lipreading data (mouth crops + optical flow) in HDF5 shards.

The public API: ``build(src, out, BuildConfig(...))`` writes shards, ``ShardDataset(root, split)`` reads
them, ``get_backend(name)`` computes flow; the configs check themselves when made and raise
``FlowprepError`` with a one-line message. See the README's *Python API* and *Code map*.
"""

from .version import __version__

# Lazy: `import flowprep` stays light (no torch, no Ray) until a name is used.
_HOMES = {
    "build": "builder",
    "reflow": "builder",
    "BuildConfig": "config",
    "FlowConfig": "config",
    "RoiConfig": "config",
    "FlowprepError": "errors",
    "ShardDataset": "dataset",
    "get_backend": "flow",
}

__all__ = [*_HOMES, "__version__"]


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'flowprep' has no attribute {name!r}")
