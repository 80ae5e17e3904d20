"""The transformers-compatible surface: processors, SuperPoint and LightGlue models, Auto classes.

They have transformers' names, inputs, outputs and checkpoints.

Everything here wraps the core (:mod:`keypoints.models`); the core never imports this package.
"""

from .auto import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForKeypointDetection,
    AutoModelForKeypointMatching,
)
from .common import BatchFeature
from .detector import KeypointDetectionModel
from .lightglue import (
    LightGlueConfig,
    LightGlueForKeypointMatching,
    LightGlueImageProcessor,
    LightGlueKeypointMatchingOutput,
)
from .superpoint import (
    SuperPointConfig,
    SuperPointForKeypointDetection,
    SuperPointImageProcessor,
    SuperPointKeypointDescriptionOutput,
)

__all__ = [
    "AutoConfig",
    "AutoImageProcessor",
    "AutoModel",
    "AutoModelForKeypointDetection",
    "AutoModelForKeypointMatching",
    "BatchFeature",
    "KeypointDetectionModel",
    "LightGlueConfig",
    "LightGlueForKeypointMatching",
    "LightGlueImageProcessor",
    "LightGlueKeypointMatchingOutput",
    "SuperPointConfig",
    "SuperPointForKeypointDetection",
    "SuperPointImageProcessor",
    "SuperPointKeypointDescriptionOutput",
]
