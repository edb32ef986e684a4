"""flowprep: two-stream lipreading data (mouth crops + optical flow) in HDF5 shards."""

__version__ = "0.1.0"

__all__ = ["BuildConfig", "ShardDataset", "build", "__version__"]


def __getattr__(name):
    # Lazy: `import flowprep` stays light (no torch, no Ray) until a name is used.
    if name == "ShardDataset":
        from .dataset import ShardDataset

        return ShardDataset
    if name == "build":
        from .builder import build

        return build
    if name == "BuildConfig":
        from .config import BuildConfig

        return BuildConfig
    raise AttributeError(f"module 'flowprep' has no attribute {name!r}")
