"""keypoints: learned keypoint detection and description in plain PyTorch.

Native API: :func:`detect` -> list of :class:`Features` (float32 (x, y) keypoints in
original-image pixels, pixel centres at integers), :func:`match`, :func:`verify`, presets
(:func:`load_preset`), bulk extraction (:func:`extract`, :func:`match_pairs`).
transformers-compatible API (:mod:`keypoints.hf`): :class:`SuperPointImageProcessor`,
:class:`SuperPointForKeypointDetection`, :class:`LightGlueImageProcessor`,
:class:`LightGlueForKeypointMatching`, the ``Auto*`` classes.
"""

from ._version import __version__
from .detection import detect
from .errors import (
    ConfigError,
    DatasetError,
    ImageError,
    ImageNotFoundError,
    KeypointsError,
    WeightsError,
    WeightsNotFoundError,
)
from .features import Features, Matches
from .hf import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForKeypointDetection,
    AutoModelForKeypointMatching,
    BatchFeature,
    LightGlueConfig,
    LightGlueForKeypointMatching,
    LightGlueImageProcessor,
    LightGlueKeypointMatchingOutput,
    SuperPointConfig,
    SuperPointForKeypointDetection,
    SuperPointImageProcessor,
    SuperPointKeypointDescriptionOutput,
)
from .image import Size
from .io import load_features, save_features
from .matching import Verification, match, match_batch, verify
from .models.aliked import ALIKED, ALIKEDConfig
from .models.disk import DISK, DISKConfig
from .models.protocol import Detector, DetectorInfo
from .models.registry import MODELS, list_models, load_model
from .models.superpoint import SuperPoint
from .models.xfeat import XFeat, XFeatConfig
from .offline import download
from .pair import PairResult, match_images
from .pipeline import ExtractSettings, extract, match_pairs
from .pipeline.sfm import SfmReport, sfm
from .presets import PRESETS, Preset, list_presets, load_preset
from .viz import plot_compare, plot_keypoints, plot_matches

__all__ = [
    "__version__",
    "detect",
    "extract",
    "match_pairs",
    "sfm",
    "SfmReport",
    "download",
    "ExtractSettings",
    "Detector",
    "DetectorInfo",
    "LightGlueConfig",
    "LightGlueForKeypointMatching",
    "LightGlueImageProcessor",
    "LightGlueKeypointMatchingOutput",
    "Features",
    "Size",
    "plot_keypoints",
    "plot_compare",
    "plot_matches",
    "Matches",
    "match",
    "match_batch",
    "match_images",
    "PairResult",
    "verify",
    "Verification",
    "load_model",
    "list_models",
    "load_preset",
    "list_presets",
    "Preset",
    "PRESETS",
    "ALIKED",
    "ALIKEDConfig",
    "DISK",
    "DISKConfig",
    "XFeat",
    "XFeatConfig",
    "MODELS",
    "save_features",
    "load_features",
    "SuperPoint",
    "SuperPointConfig",
    "SuperPointImageProcessor",
    "SuperPointForKeypointDetection",
    "SuperPointKeypointDescriptionOutput",
    "BatchFeature",
    "AutoConfig",
    "AutoImageProcessor",
    "AutoModel",
    "AutoModelForKeypointDetection",
    "AutoModelForKeypointMatching",
    "KeypointsError",
    "ImageError",
    "ImageNotFoundError",
    "ConfigError",
    "DatasetError",
    "WeightsError",
    "WeightsNotFoundError",
]
