"""Robust estimators of homographies and fundamental matrices from point correspondences.

:func:`fit` fits a homography (``x1 ~ H x0``) or a fundamental matrix (``x1^T F x0 = 0``) to
``K`` correspondences with one of two robust estimators:

- ``"poselib"``: PoseLib's LO-RANSAC (Larsson et al., https://github.com/PoseLib/PoseLib): MSAC
  scoring with a hard threshold (reprojection error in image 1 for H, Sampson error for F), local
  optimisation of the best models, then a final Levenberg-Marquardt refinement on the inliers
  with a Cauchy loss of scale ``threshold / 2`` (PoseLib's defaults; at most 100 iterations). It
  runs at least 1000 RANSAC iterations (PoseLib's ``min_iterations``) unless ``max_iters`` is
  smaller, and is deterministic (fixed seed).
- ``"opencv"``: OpenCV's USAC MAGSAC++ (``cv2.USAC_MAGSAC``, Barath et al. 2020), as
  :func:`keypoints.verify` uses today.

Points are ``(x, y)`` pixels of the original images, pixel centres at integers. Both estimators
normalise the points internally, so pixels are the right input for H and F; the returned matrix
maps these same pixel coordinates. The thresholds do not mean quite the same (a hard MSAC
threshold for PoseLib; MAGSAC++ weights residuals over a range of noise scales and uses the
threshold for its inlier mask), so each estimator's best value may differ.
"""

from __future__ import annotations

import numpy as np

from .defaults import ESTIMATORS, GEOMETRIC_MODELS
from .errors import ConfigError, closest

__all__ = ["ESTIMATORS", "fit", "check_options"]


def fit(
    points0: np.ndarray,
    points1: np.ndarray,
    model: str,
    estimator: str,
    threshold: float,
    confidence: float = 0.9999,
    max_iters: int = 10000,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Fit a homography or a fundamental matrix to correspondences with a robust estimator.

    Args:
        points0: ``(K, 2)`` float ``(x, y)`` pixels in image 0 (converted to float64).
        points1: ``(K, 2)`` float ``(x, y)`` pixels in image 1, ``points1[i]`` matching
            ``points0[i]``.
        model: ``"homography"`` (needs 4 correspondences) or ``"fundamental"`` (needs 8).
        estimator: ``"poselib"`` or ``"opencv"`` (see the module docstring).
        threshold: inlier threshold in pixels: reprojection error in image 1 for H, distance
            to the epipolar line (PoseLib: Sampson error) for F. PoseLib's
            ``max_reproj_error`` / ``max_epipolar_error``, OpenCV's ``ransacReprojThreshold``.
        confidence: the desired probability of success, in (0, 1) (PoseLib's ``success_prob``,
            OpenCV's ``confidence``).
        max_iters: the maximum number of RANSAC iterations (PoseLib's ``max_iterations``,
            OpenCV's ``maxIters``).

    Returns:
        ``(matrix, inliers)``: the 3x3 float64 matrix mapping image 0 to image 1 (a homography
        scaled so that ``H[2, 2] = 1``, or a fundamental matrix of unit Frobenius norm), or
        None when none was found; and the ``(K,)`` bool inlier mask (all False without a
        matrix). PoseLib's mask is its RANSAC consensus set, taken before the final refinement.
        Too few correspondences give ``(None, all False)`` without raising.

    Raises:
        ConfigError: an unknown model or estimator, an option out of range, or ``"poselib"``
            when PoseLib is not installed.
        ValueError: points that are not two ``(K, 2)`` arrays of the same length of finite
            numbers.
    """
    check_options(model, estimator, threshold, confidence, max_iters)
    p0 = np.ascontiguousarray(points0, dtype=np.float64)
    p1 = np.ascontiguousarray(points1, dtype=np.float64)
    if p0.ndim != 2 or p0.shape[1:] != (2,) or p0.shape != p1.shape:
        raise ValueError(
            f"points0 and points1 must be (K, 2) arrays of the same K, got {p0.shape} and "
            f"{p1.shape}"
        )
    if not (np.isfinite(p0).all() and np.isfinite(p1).all()):
        raise ValueError("points0 and points1 must be finite")
    none = np.zeros(len(p0), dtype=bool)
    if len(p0) < GEOMETRIC_MODELS[model]:
        return None, none
    if estimator == "poselib":
        matrix, inliers = _poselib(p0, p1, model, threshold, confidence, max_iters)
    else:
        matrix, inliers = _opencv(p0, p1, model, threshold, confidence, max_iters)
    if matrix is None or matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        return None, none
    matrix = _normalised(np.asarray(matrix, dtype=np.float64), model)
    if matrix is None or inliers.sum() < GEOMETRIC_MODELS[model]:
        return None, none
    return matrix, inliers


def check_options(
    model: str, estimator: str, threshold: float, confidence: float = 0.9999, max_iters: int = 1
) -> None:
    """Raise :class:`ConfigError` for an unknown model or estimator or an option out of range."""
    if estimator not in ESTIMATORS:
        raise ConfigError(
            f"unknown estimator '{estimator}'{closest(str(estimator), ESTIMATORS)}; "
            f"available: {', '.join(ESTIMATORS)}"
        )
    if model not in GEOMETRIC_MODELS:
        raise ConfigError(
            f"unknown model '{model}'{closest(str(model), GEOMETRIC_MODELS)}; allowed: "
            f"{', '.join(GEOMETRIC_MODELS)}"
        )
    if not threshold > 0:
        raise ConfigError(f"threshold={threshold!r} is out of range; allowed: > 0 pixels")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence!r} is out of range; allowed: (0, 1)")
    if not max_iters >= 1:
        raise ConfigError(f"max_iters={max_iters!r} is out of range; allowed: >= 1")


def _normalised(matrix: np.ndarray, model: str) -> np.ndarray | None:
    """H scaled to ``H[2, 2] = 1`` (unit norm if that is ~0), F to unit norm; None if zero."""
    norm = np.linalg.norm(matrix)
    if not norm > 0:
        return None
    if model == "homography" and abs(matrix[2, 2]) > 1e-12 * norm:
        return matrix / matrix[2, 2]
    return matrix / norm


def _poselib(p0, p1, model: str, threshold: float, confidence: float, max_iters: int):
    """PoseLib's estimate: ``(matrix or None, (K,) bool inliers)``."""
    try:
        import poselib
    except ImportError:
        raise ConfigError(
            "estimator 'poselib' needs PoseLib: pip install poselib (or use estimator='opencv')"
        ) from None
    key = "max_reproj_error" if model == "homography" else "max_epipolar_error"
    ransac = {key: float(threshold), "success_prob": float(confidence),
              "max_iterations": int(max_iters)}  # fmt: skip
    if model == "homography":
        matrix, info = poselib.estimate_homography(p0, p1, ransac, {})
    else:
        matrix, info = poselib.estimate_fundamental(p0, p1, ransac, {})
    inliers = np.asarray(info["inliers"], dtype=bool).reshape(-1)
    # PoseLib returns its starting model (the identity) when RANSAC found nothing
    if len(inliers) != len(p0) or info.get("num_inliers", 0) < GEOMETRIC_MODELS[model]:
        return None, np.zeros(len(p0), dtype=bool)
    return np.asarray(matrix, dtype=np.float64), inliers


def _opencv(p0, p1, model: str, threshold: float, confidence: float, max_iters: int):
    """OpenCV's USAC MAGSAC++ estimate: ``(matrix or None, (K,) bool inliers)``."""
    import cv2

    if model == "homography":
        matrix, mask = cv2.findHomography(
            p0, p1, method=cv2.USAC_MAGSAC, ransacReprojThreshold=threshold,
            maxIters=max_iters, confidence=confidence,
        )  # fmt: skip
    else:
        matrix, mask = cv2.findFundamentalMat(
            p0, p1, method=cv2.USAC_MAGSAC, ransacReprojThreshold=threshold,
            confidence=confidence, maxIters=max_iters,
        )  # fmt: skip
    if matrix is None or mask is None:
        return None, np.zeros(len(p0), dtype=bool)
    return matrix, np.asarray(mask, dtype=bool).reshape(-1)
