"""Batch work over many images, in resumable and crash-safe stages.

The stages: listing the images, extracting their features into one file (local and Ray engines),
choosing pairs, and matching pairs into one file, each stage resumable and crash-safe.
"""

from .extract import ExtractReport, extract, extract_report
from .images import IMAGE_EXTENSIONS, list_images
from .match_pairs import match_pairs, match_scores
from .pairs import (
    exhaustive_pairs,
    gps_pairs,
    pairs_from,
    read_pairs,
    sequential_pairs,
    write_pairs,
)
from .retrieval import nearest_images, recall_at_k, retrieval_pairs
from .settings import ExtractSettings

__all__ = [
    "IMAGE_EXTENSIONS",
    "ExtractReport",
    "ExtractSettings",
    "exhaustive_pairs",
    "extract",
    "extract_report",
    "gps_pairs",
    "list_images",
    "match_pairs",
    "match_scores",
    "nearest_images",
    "pairs_from",
    "read_pairs",
    "recall_at_k",
    "retrieval_pairs",
    "sequential_pairs",
    "write_pairs",
]
