"""Metrics of detectors and matchers on image pairs related by a homography.

All keypoints are (x, y) pixels with centres at integers, in the original images; ``H`` maps
image 0 to image 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "warp_points",
    "repeatability",
    "matching_accuracy",
    "corner_error",
    "homography_accuracy",
    "homography_auc",
]


def warp_points(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points mapped by a 3x3 homography."""
    p = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ homography.T
    return p[:, :2] / p[:, 2:3]


def _inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return (
        (points[:, 0] >= 0)
        & (points[:, 0] <= w - 1)
        & (points[:, 1] >= 0)
        & (points[:, 1] <= h - 1)
    )


def _min_distances(a: np.ndarray, b: np.ndarray, block: int = 4096) -> np.ndarray:
    """For each point of ``a``, the distance to the nearest point of ``b`` (inf if b empty)."""
    if len(b) == 0:
        return np.full(len(a), np.inf)
    out = np.empty(len(a))
    for s in range(0, len(a), block):
        d = np.linalg.norm(a[s : s + block, None] - b[None], axis=-1)
        out[s : s + block] = d.min(1)
    return out


def repeatability(
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    homography: np.ndarray,
    size0: tuple[int, int],
    size1: tuple[int, int],
    threshold: float = 3.0,
) -> float:
    """Repeatability of two images' keypoints (DeTone et al. 2018, SuperPoint, section 7.2).

    Keypoints of each image are kept when they fall inside the other image after warping (the
    shared view); a kept keypoint is repeated when a kept keypoint of the other image lies within
    ``threshold`` pixels after warping. Symmetric: (repeated in 0 + repeated in 1) / (kept in 0 +
    kept in 1); 0 when no keypoint is in the shared view. Sizes are (width, height).
    """
    warped0 = warp_points(keypoints0, homography)
    warped1 = warp_points(keypoints1, np.linalg.inv(homography))
    keep0, keep1 = _inside(warped0, size1), _inside(warped1, size0)
    total = keep0.sum() + keep1.sum()
    if total == 0:
        return 0.0
    a = warped0[keep0]  # kept keypoints of image 0, in image 1
    b = keypoints1[keep1]  # kept keypoints of image 1
    repeated = (_min_distances(a, b) <= threshold).sum() + (_min_distances(b, a) <= threshold).sum()
    return float(repeated / total)


def matching_accuracy(
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    matches: np.ndarray,
    homography: np.ndarray,
    thresholds: Sequence[float] = tuple(range(1, 11)),
) -> np.ndarray:
    """Mean matching accuracy of one pair (Dusmanu et al. 2019, D2-Net, section 5.1).

    For each threshold, the fraction of ``matches (K, 2)`` whose keypoint in image 0, warped by
    ``homography``, lies within the threshold of its match in image 1; 0 when K = 0.
    """
    if len(matches) == 0:
        return np.zeros(len(thresholds))
    projected = warp_points(keypoints0[matches[:, 0]], homography)
    errors = np.linalg.norm(projected - keypoints1[matches[:, 1]], axis=1)
    return np.array([(errors <= t).mean() for t in thresholds])


def corner_error(estimate: np.ndarray | None, truth: np.ndarray, size0: tuple[int, int]) -> float:
    """Mean distance between image 0's corners mapped by the estimated and the true homography.

    The four corners of image 0 (size (width, height)) are mapped by the estimated and by the
    true homography (DeTone et al. 2018; glue-factory); inf without an estimate.
    """
    if estimate is None:
        return float("inf")
    w, h = size0
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    diff = warp_points(corners, estimate) - warp_points(corners, truth)
    error = float(np.linalg.norm(diff, axis=1).mean())
    return error if np.isfinite(error) else float("inf")


def homography_accuracy(errors: Sequence[float], thresholds=(1, 3, 5, 10)) -> dict[str, float]:
    """Fraction of pairs whose corner error is at most each threshold."""
    values = np.asarray(errors, dtype=np.float64)
    if len(values) == 0:
        return {str(t): 0.0 for t in thresholds}
    return {str(t): float((values <= t).mean()) for t in thresholds}


def homography_auc(errors: Sequence[float], thresholds=(1, 3, 5, 10)) -> dict[str, float]:
    """Area under the cumulative corner-error curve up to each threshold.

    The area is divided by the threshold (SuperGlue / glue-factory's AUC); failed estimates count
    as infinite error.
    """
    values = np.sort(np.asarray(errors, dtype=np.float64))
    out = {}
    for t in thresholds:
        if len(values) == 0:
            out[str(t)] = 0.0
            continue
        recall = np.arange(1, len(values) + 1) / len(values)
        last = int(np.searchsorted(values, t))
        x = np.concatenate([[0.0], values[:last], [t]])
        y = np.concatenate([[0.0], recall[:last], [recall[last - 1] if last else 0.0]])
        out[str(t)] = _trapezoid(y, x) / t
    return out


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """The area under the piecewise linear curve through ``(x, y)`` (the trapezoid rule)."""
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
