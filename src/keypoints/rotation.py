"""In-plane rotation for upright detectors: try the second image at 0, 90, 180 and 270 degrees.

Learned detectors such as ALIKED-n16, SuperPoint, DISK and XFeat are trained upright: their
descriptors change when the image turns, so a pair rotated by 90 degrees or more has few correct
matches (SIFT assigns each keypoint an orientation and does not care). ``rotation="auto"``
detects the second image at each quarter turn (:func:`numpy.rot90`), matches it with the first,
fits the geometric model, and keeps the turn with the most inliers (detectors whose registry entry
is ``rotation_invariant``, SIFT and ORB, are not searched); keypoints, matrix and
inliers are reported in the original frame of the second image. The search stops at the first
turn that is clearly right (at least :data:`ENOUGH_INLIERS` inliers making up at least
:data:`ENOUGH_RATIO` of its matches), so an upright pair costs what it costs without rotation
handling; a turned pair costs up to three more detections of the second image and three more
matchings and fits (up to 4x). Measured on the 15 Oxford pairs (ALIKED-n16 + LightGlue): upright
pairs passed at turn 0 with 42-91% inliers, the wrong turns had at most 32%. Rotations
between the quarter turns (e.g. 30 degrees) are left to the descriptors' own tolerance, which the
nearest quarter turn brings within 45 degrees.

Coordinates: keypoints are (x, y) pixels with pixel centres at integers. ``np.rot90(image, k)``
turns an image of width W counterclockwise by k quarter turns; one turn sends (x, y) to
(y, W - 1 - x).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .defaults import ROTATIONS
from .errors import ConfigError, closest
from .features import Features, Matches
from .matching import Verification
from .models.registry import detector_info

#: A turn with this many inliers, making up this fraction of its matches, ends the search.
ENOUGH_INLIERS = 50
ENOUGH_RATIO = 0.5

__all__ = [
    "ROTATIONS",
    "ENOUGH_INLIERS",
    "ENOUGH_RATIO",
    "check_rotation",
    "searches",
    "quarter_turn_matrix",
    "features_to_original",
    "RotationSearch",
    "search_rotation",
]


def check_rotation(rotation: str) -> None:
    """Raise :class:`ConfigError` unless ``rotation`` is one of :data:`ROTATIONS`."""
    if rotation not in ROTATIONS:
        raise ConfigError(
            f"unknown rotation '{rotation}'{closest(rotation, ROTATIONS)}; "
            f"allowed: {', '.join(ROTATIONS)}"
        )


def searches(rotation: str, model: str | None) -> bool:
    """True when ``rotation`` asks for the quarter-turn search on detector ``model``'s features.

    ``"auto"`` searches unless the detector's registry entry says it is rotation invariant (SIFT,
    ORB), where the search would cost up to 4x for nothing.
    """
    check_rotation(rotation)
    if rotation == "none":
        return False
    info = detector_info(model)
    return info is None or not info.rotation_invariant


def quarter_turn_matrix(turns: int, size: tuple[int, int]) -> np.ndarray:
    """The 3x3 float64 map from an image's pixels to those of ``np.rot90(image, turns)``.

    ``size`` is the (width, height) of the unrotated image; homogeneous (x, y, 1) in, out.
    """
    matrix = np.eye(3)
    width, height = size
    for _ in range(turns % 4):
        one = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, width - 1.0], [0.0, 0.0, 1.0]])
        matrix = one @ matrix
        width, height = height, width
    return matrix


def features_to_original(features: Features, turns: int, size: tuple[int, int]) -> Features:
    """:class:`Features` detected on ``np.rot90(image, turns)``, mapped to the image's own frame.

    ``size`` is the (width, height) of the unrotated image. Keypoints ``(N, 2)`` float32 are
    mapped back, orientations (radians) turned by the same rotation, ``image_size`` becomes
    ``size``; descriptors and scores are unchanged.
    """
    if turns % 4 == 0:
        return features
    back = np.linalg.inv(quarter_turn_matrix(turns, size))
    points = features.keypoints.double().numpy()
    mapped = points @ back[:2, :2].T + back[:2, 2]
    orientations = features.orientations
    if orientations is not None:
        directions = torch.stack([orientations.cos(), orientations.sin()], 1).double().numpy()
        turned = directions @ back[:2, :2].T
        orientations = torch.from_numpy(np.arctan2(turned[:, 1], turned[:, 0])).float()
    return dataclasses.replace(
        features,
        keypoints=torch.from_numpy(mapped).float(),
        image_size=(int(size[0]), int(size[1])),
        orientations=orientations,
    )


@dataclass
class RotationSearch:
    """The result of :func:`search_rotation`.

    Attributes:
        features1: the second image's :class:`Features` at the chosen turn, keypoints in its
            original frame.
        matches: the matches between the first image and ``features1``.
        verification: the fit (:class:`keypoints.matching.Verification`), matrix and inliers in
            the original frames.
        turns: quarter turns (counterclockwise) that were chosen, 0-3.
        inliers: the number of inliers of each turn tried, in the order tried (the search
            stops at a clearly right turn).
    """

    features1: Features
    matches: Matches
    verification: Verification
    turns: int
    inliers: list[int]

    @property
    def degrees(self) -> int:
        """The chosen rotation of the second image in degrees (counterclockwise)."""
        return 90 * self.turns


def search_rotation(
    features0: Features,
    image1: np.ndarray,
    detect: Callable[[np.ndarray], Features],
    match: Callable[[Features, Features], Matches],
    verify: Callable[[Features, Features, Matches], Verification],
    turns: tuple[int, ...] = (0, 1, 2, 3),
) -> RotationSearch:
    """Detect, match and verify the second image at each quarter turn; keep the best.

    Args:
        features0: the first image's features.
        image1: the second image, decoded ``(H, W, C)`` (:func:`keypoints.image.to_array`).
        detect: ``array -> Features`` in the pixels of the array it is given.
        match: ``(features0, features1) -> Matches``; runs on the rotated frame, so a learned
            matcher sees consistent positions.
        verify: ``(features0, features1, matches) -> Verification`` (with ``num_inliers``,
            ``matrix`` mapping image 0 to image 1 and ``inliers``).
        turns: the quarter turns to try, in order (ties keep the first); the search stops at
            the first turn with :data:`ENOUGH_INLIERS` inliers making up :data:`ENOUGH_RATIO` of
            its matches.

    Returns:
        :class:`RotationSearch` in the original frame of the second image: a homography
        ``H_rot`` found on the turned image becomes ``R^-1 H_rot`` and a fundamental matrix
        ``F_rot`` becomes ``R^T F_rot`` (``R`` the turn's pixel map); inliers are unchanged.
    """
    height, width = image1.shape[:2]
    best = None
    counts = []
    for k in turns:
        f1 = detect(np.ascontiguousarray(np.rot90(image1, k)))
        matches = match(features0, f1)
        fit = verify(features0, f1, matches)
        counts.append(fit.num_inliers)
        if best is None or counts[-1] > counts[best[0]]:
            best = (len(counts) - 1, k, f1, matches, fit)
        if counts[-1] >= max(ENOUGH_INLIERS, ENOUGH_RATIO * len(matches)):
            break
    assert best is not None, "at least one turn is tried"
    _, k, f1, matches, fit = best
    size = (width, height)
    if k % 4 and fit.matrix is not None:
        turn = quarter_turn_matrix(k, size)
        matrix = fit.matrix
        if fit.model == "homography":
            matrix = np.linalg.inv(turn) @ matrix
            matrix = matrix / matrix[2, 2]
        else:
            matrix = turn.T @ matrix
        fit = dataclasses.replace(fit, matrix=matrix)
    return RotationSearch(features_to_original(f1, k, size), matches, fit, k % 4, counts)
