"""Face tracking and the aligned mouth crop: dlib landmarks in, 112x112 ROIs and QC out."""

from .extract import MouthRoiExtractor, RoiResult
from .dlib_files import landmark_model_paths

__all__ = ["MouthRoiExtractor", "RoiResult", "landmark_model_paths"]
