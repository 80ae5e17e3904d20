"""keypoints: learned keypoint detection and description in plain PyTorch.

Native API: :func:`detect` -> list of :class:`Features` (float32 (x, y) keypoints in
original-image pixels, pixel centres at integers). transformers-compatible API:
:class:`SuperPointImageProcessor`, :class:`SuperPointForKeypointDetection`,
:class:`LightGlueImageProcessor`, :class:`LightGlueForKeypointMatching`, the ``Auto*`` classes.
"""

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
from .extract import extract
from .features import Features, Matches
from .hf import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForKeypointDetection,
    BatchFeature,
    SuperPointForKeypointDetection,
    SuperPointImageProcessor,
    SuperPointKeypointDescriptionOutput,
)
from .hf_lightglue import (
    AutoModel,
    AutoModelForKeypointMatching,
    LightGlueConfig,
    LightGlueForKeypointMatching,
    LightGlueImageProcessor,
    LightGlueKeypointMatchingOutput,
)
from .io import load_features, save_features
from .matching import Verification, match, match_batch, verify
from .models.aliked import ALIKED, ALIKEDConfig
from .models.registry import MODELS, list_models, load_model
from .models.superpoint import SuperPoint, SuperPointConfig
from .viz import plot_keypoints, plot_matches

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "detect",
    "extract",
    "LightGlueConfig",
    "LightGlueForKeypointMatching",
    "LightGlueImageProcessor",
    "LightGlueKeypointMatchingOutput",
    "Features",
    "plot_keypoints",
    "plot_matches",
    "Matches",
    "match",
    "match_batch",
    "verify",
    "Verification",
    "load_model",
    "list_models",
    "ALIKED",
    "ALIKEDConfig",
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
