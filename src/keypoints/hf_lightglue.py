"""Former home of the transformers-compatible LightGlue, now :mod:`keypoints.hf.lightglue`.

Its names are re-exported here so that existing imports keep working.
"""

from .hf.auto import AutoModel, AutoModelForKeypointMatching
from .hf.lightglue import (
    LightGlueConfig,
    LightGlueForKeypointMatching,
    LightGlueImageProcessor,
    LightGlueKeypointMatchingOutput,
)

__all__ = [
    "AutoModel",
    "AutoModelForKeypointMatching",
    "LightGlueConfig",
    "LightGlueForKeypointMatching",
    "LightGlueImageProcessor",
    "LightGlueKeypointMatchingOutput",
]
