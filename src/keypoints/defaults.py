"""The one home of the package's defaults and choices.

The Python API, the command line, the presets and the pipeline all import them from here, so a
default is changed in one place. This module imports nothing from the package.
"""

from __future__ import annotations

#: The detector used when none is named: bundled with the package, runs offline. ALIKED-n16rot
#: (trained with in-plane rotations) rather than the upright n16: same network and speed, and with
#: cvg's ALIKED LightGlue it scored best on the 15 Oxford pairs (MMA@3 0.840, H@1 0.267, AUC@5
#: 0.580 against n16's 0.821, 0.133, 0.546; SIFT + mutual NN 0.450, 0.200, 0.465).
DEFAULT_MODEL = "aliked-n16rot"
#: Preprocessing: the longest side in pixels. Smaller images are never upsampled (cvg's LightGlue
#: ``Extractor`` upsamples them to ``resize``; pass an exact size to do the same).
DEFAULT_RESIZE = 1024
#: Images with more pixels are refused (Pillow's own decompression-bomb limit).
DEFAULT_MAX_PIXELS = 89_478_485
#: Where models run: "auto" is CUDA when a GPU is visible (then Apple's MPS), else the CPU, as
#: hloc's and LightGlue's examples choose. A detector or matcher passed in as an object stays
#: where it is under "auto".
DEFAULT_DEVICE = "auto"
#: Images decoded at a time by :func:`keypoints.detect` (bounds memory).
DEFAULT_BATCH_SIZE = 8

#: Where a detector's dense network runs.
BACKENDS = ("auto", "torch", "onnxruntime")
DEFAULT_BACKEND = "auto"
#: Arithmetic of the dense networks and of LightGlue's layers: fp32 (parity), bf16 (torch
#: autocast), int8 (onnxruntime, static quantization; SuperPoint's dense network), or "fast":
#: per model the fastest measured (int8 for SuperPoint, bf16 for the others and LightGlue).
PRECISIONS = ("fp32", "bf16", "int8", "fast")
DEFAULT_PRECISION = "fp32"

#: Matching methods: "auto" (LightGlue when weights for the features' detector are available
#: offline, else mutual nearest neighbour), mutual nearest neighbour, or LightGlue.
MATCHERS = ("auto", "mnn", "lightglue")
DEFAULT_MATCHER = "auto"
#: In-plane rotation handling of pair matching: "none", or "auto" (the second image is also
#: tried at 90, 180 and 270 degrees unless the upright match is clearly right; the turn with the
#: most inliers wins; see keypoints.rotation). "auto" is the default of `match` and `eval`: on
#: the Oxford pairs it lifted ALIKED-n16 + LightGlue from AUC@5 0.493 to 0.546 at no cost on
#: upright pairs.
ROTATIONS = ("none", "auto")
DEFAULT_ROTATION = "auto"
#: Pairs per LightGlue forward pass.
DEFAULT_MATCH_BATCH_SIZE = 8

#: Geometric models fitted by :func:`keypoints.verify`, with the matches each needs.
GEOMETRIC_MODELS = {"homography": 4, "fundamental": 8}
#: Robust estimators of :func:`keypoints.verify`: PoseLib's LO-RANSAC, OpenCV's USAC MAGSAC++.
#: PoseLib at 2 px is the default: on the 15 Oxford pairs it gave the best AUC@5 for both
#: ALIKED-n16 + LightGlue (0.491 vs MAGSAC++'s best 0.421) and SIFT + mutual NN (0.473 vs
#: 0.437), see benchmarks/bench_estimators.py.
ESTIMATORS = ("poselib", "opencv")
DEFAULT_ESTIMATOR = "poselib"
#: The estimator's inlier threshold in pixels.
DEFAULT_RANSAC_THRESHOLD = 2.0

#: Bulk extraction: engines, decoding threads, images per shard.
ENGINES = ("local", "ray")
DEFAULT_ENGINE = "local"
DEFAULT_WORKERS = 2
DEFAULT_SHARD_SIZE = 32
#: Pairs per block of match-pairs (one shard file each: a kill loses at most one block).
DEFAULT_MATCH_SHARD_SIZE = 256

#: The homography benchmark's protocol: detectors compared, keypoints per image.
EVAL_MODELS = (DEFAULT_MODEL, "sift")
EVAL_MAX_KEYPOINTS = 2048
