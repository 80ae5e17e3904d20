"""The one home of the package's defaults and choices.

The Python API, the command line, the presets and the pipeline all import them from here, so a
default is changed in one place. This module imports nothing from the package.
"""

from __future__ import annotations

#: The detector used when none is named: bundled with the package, runs offline.
DEFAULT_MODEL = "aliked-n16"
#: Preprocessing: the longest side in pixels. Smaller images are never upsampled (cvg's LightGlue
#: ``Extractor`` upsamples them to ``resize``; pass an exact size to do the same).
DEFAULT_RESIZE = 1024
#: Images with more pixels are refused (Pillow's own decompression-bomb limit).
DEFAULT_MAX_PIXELS = 89_478_485
#: Images decoded at a time by :func:`keypoints.detect` (bounds memory).
DEFAULT_BATCH_SIZE = 8

#: Where a detector's dense network runs.
BACKENDS = ("auto", "torch", "onnxruntime")
DEFAULT_BACKEND = "auto"
#: Arithmetic of the dense networks and of LightGlue's layers.
PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"

#: Matching methods: "auto" (LightGlue when weights for the features' detector are available
#: offline, else mutual nearest neighbour), mutual nearest neighbour, or LightGlue.
MATCHERS = ("auto", "mnn", "lightglue")
DEFAULT_MATCHER = "auto"
#: In-plane rotation handling of pair matching: "none", or "auto" (the second image is also
#: tried at 90, 180 and 270 degrees; the turn with the most inliers wins).
ROTATIONS = ("none", "auto")
DEFAULT_ROTATION = "none"
#: Pairs per LightGlue forward pass.
DEFAULT_MATCH_BATCH_SIZE = 8

#: Geometric models fitted by :func:`keypoints.verify`, with the matches each needs.
GEOMETRIC_MODELS = {"homography": 4, "fundamental": 8}
#: Robust estimators of :func:`keypoints.verify`: PoseLib's LO-RANSAC, OpenCV's USAC MAGSAC++.
ESTIMATORS = ("poselib", "opencv")
DEFAULT_ESTIMATOR = "opencv"
#: The estimator's inlier threshold in pixels.
DEFAULT_RANSAC_THRESHOLD = 3.0

#: Bulk extraction: engines, decoding threads, images per shard.
ENGINES = ("local", "ray")
DEFAULT_ENGINE = "local"
DEFAULT_WORKERS = 2
DEFAULT_SHARD_SIZE = 32

#: The homography benchmark's protocol: detectors compared, keypoints per image.
EVAL_MODELS = ("aliked-n16", "sift")
EVAL_MAX_KEYPOINTS = 2048
