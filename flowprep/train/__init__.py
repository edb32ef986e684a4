"""Two-stream lipreading training on flowprep shards: 3D-CNN front-ends (gray, flow), BiLSTM or
temporal-convolution back-ends, feature or score fusion.

    from flowprep.train import TrainConfig, train, evaluate
    summary = train(TrainConfig(shards="shards/", out="runs/r3d18-bilstm"))
    scores = evaluate("runs/r3d18-bilstm", split="test")
"""

from .config import TrainConfig

__all__ = ["LipReader", "TrainConfig", "build_model", "evaluate", "train"]


def __getattr__(name):
    # Lazy: the command line imports this package for its options without loading torch.
    if name == "train":
        from .trainer import train

        return train
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    if name in ("LipReader", "build_model"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'flowprep.train' has no attribute {name!r}")
