"""Evaluation on image pairs related by known homographies (HPatches, Oxford affine)."""

from .datasets import Pair, Sequence, load_dataset
from .homography import evaluate_homography
from .metrics import (
    corner_error,
    homography_accuracy,
    homography_auc,
    matching_accuracy,
    repeatability,
    warp_points,
)

__all__ = [
    "Pair",
    "Sequence",
    "load_dataset",
    "evaluate_homography",
    "corner_error",
    "homography_accuracy",
    "homography_auc",
    "matching_accuracy",
    "repeatability",
    "warp_points",
]
