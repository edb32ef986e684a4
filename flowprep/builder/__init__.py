"""Build shards from videos: the stages, the plan, the Ray executor and the driver loop."""

from .report import BuildReport
from .reflow_runner import reflow
from .runner import build

__all__ = ["BuildReport", "build", "reflow"]
