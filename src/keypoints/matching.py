"""Matching descriptors and verifying matches geometrically.

``match`` pairs keypoints by mutual nearest neighbour (optionally with Lowe's ratio test and a
distance cap), in bounded memory; ``verify`` fits a homography or a fundamental matrix with
OpenCV's USAC MAGSAC++ and reports the inliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError, closest
from .features import Features, Matches

__all__ = ["match", "verify", "Verification", "METHODS", "MODELS"]

METHODS = ("mnn",)
METRICS = ("l2", "cosine", "hamming")
MODELS = {"homography": 4, "fundamental": 8}  # model -> minimum number of matches
#: Elements of one distance block (rows x columns); 2^24 float32 = 64 MiB.
BLOCK_ELEMENTS = 1 << 24


def _as_float(features: Features) -> torch.Tensor:
    """Descriptors as float32; binary (uint8) ones unpacked to +-1 per bit."""
    d = features.descriptors
    if features.binary or d.dtype == torch.uint8:
        bits = np.unpackbits(d.cpu().numpy(), axis=1).astype(np.float32)
        return torch.from_numpy(bits * 2 - 1)
    return d.float()


def _distances(d0: torch.Tensor, d1: torch.Tensor, metric: str, sq1: torch.Tensor | None):
    """Block ``(len(d0), len(d1))`` of a quantity ordered like the distance: squared L2,
    ``1 - cos`` or Hamming bits (:func:`_finish` turns the selected ones into distances)."""
    if metric == "l2":  # |a|^2 + |b|^2 - 2 a.b, in place
        block = torch.addmm(sq1[None], d0, d1.T, alpha=-2)
        return block.add_((d0 * d0).sum(1, keepdim=True))
    dot = d0 @ d1.T
    if metric == "hamming":  # +-1 vectors: dot = bits - 2 * hamming
        return dot.sub_(d0.shape[1]).div_(-2)
    norms = d0.norm(dim=1, keepdim=True) * d1.norm(dim=1)[None]
    return dot.div_(norms.clamp_(min=1e-12)).neg_().add_(1)


def _finish(values: torch.Tensor, metric: str) -> torch.Tensor:
    return values.clamp(min=0).sqrt() if metric == "l2" else values


def match(
    features0: Features,
    features1: Features,
    method: str = "mnn",
    ratio: float | None = None,
    max_distance: float | None = None,
    metric: str | None = None,
    block_elements: int = BLOCK_ELEMENTS,
) -> Matches:
    """Match the descriptors of two images.

    Args:
        features0, features1: :class:`Features` with ``descriptors`` ``(N0, D)`` and
            ``(N1, D)`` of the same kind.
        method: ``"mnn"``, mutual nearest neighbour: i and j match when each is the other's
            nearest neighbour.
        ratio: Lowe's ratio test (Lowe 2004): keep a match only when its distance is below
            ``ratio`` times the distance to the second nearest neighbour in the other image.
        max_distance: drop matches farther than this.
        metric: ``"l2"`` (default for float descriptors), ``"cosine"`` (``1 - cos``), or
            ``"hamming"`` (default and only choice for binary descriptors, e.g. ORB).
        block_elements: the distance matrix is computed in row blocks of at most this many
            elements, so 16k x 16k keypoints need about 64 MiB at a time.

    Returns:
        :class:`Matches` with ``indices (K, 2)`` int64 sorted by the first index and
        ``distances (K,)`` float32.
    """
    if method not in METHODS:
        raise ConfigError(
            f"unknown matching method '{method}'{closest(method, METHODS)}; "
            f"available: {', '.join(METHODS)}"
        )
    binary = features0.binary or features1.binary
    metric = metric or ("hamming" if binary else "l2")
    if metric not in METRICS:
        raise ConfigError(f"unknown metric '{metric}'{closest(metric, METRICS)}")
    if binary != (metric == "hamming"):
        raise ConfigError("binary descriptors (ORB) are matched with metric='hamming' only")
    if features0.binary != features1.binary:
        raise ConfigError("cannot match binary descriptors with float descriptors")
    if ratio is not None and not 0 < ratio <= 1:
        raise ConfigError(f"ratio={ratio!r} is out of range; allowed: (0, 1]")
    d0, d1 = _as_float(features0), _as_float(features1)
    n0, n1 = len(d0), len(d1)
    empty = Matches(torch.zeros((0, 2), dtype=torch.long), torch.zeros(0))
    if n0 == 0 or n1 == 0:
        return empty
    if d0.shape[1] != d1.shape[1]:
        raise ConfigError(
            f"descriptor sizes differ ({d0.shape[1]} vs {d1.shape[1]}): were both images "
            "described by the same model?"
        )

    sq1 = (d1 * d1).sum(1) if metric == "l2" else None
    rows = max(1, block_elements // n1)
    nn01 = torch.empty(n0, dtype=torch.long)
    dist01 = torch.empty(n0)
    second01 = torch.full((n0,), float("inf"))
    best10 = torch.full((n1,), float("inf"))
    nn10 = torch.zeros(n1, dtype=torch.long)
    for start in range(0, n0, rows):
        block = _distances(d0[start : start + rows], d1, metric, sq1)
        stop = start + len(block)
        if ratio is not None and n1 >= 2:  # the second nearest neighbour is needed
            values, index = block.topk(2, dim=1, largest=False)
            nn01[start:stop], dist01[start:stop] = index[:, 0], values[:, 0]
            second01[start:stop] = values[:, 1]
        else:
            dist01[start:stop], nn01[start:stop] = block.min(dim=1)
        col_best, col_arg = block.min(dim=0)
        better = col_best < best10  # strict: the first (lowest) row wins ties, as one argmin
        best10 = torch.where(better, col_best, best10)
        nn10 = torch.where(better, col_arg + start, nn10)
    dist01, second01 = _finish(dist01, metric), _finish(second01, metric)

    keep = nn10[nn01] == torch.arange(n0)
    if ratio is not None:
        keep &= dist01 < ratio * second01
    if max_distance is not None:
        keep &= dist01 <= max_distance
    i0 = torch.nonzero(keep)[:, 0]
    return Matches(torch.stack([i0, nn01[i0]], dim=1), dist01[i0].float())


@dataclass
class Verification:
    """Result of :func:`verify`.

    Attributes:
        model: ``"homography"`` or ``"fundamental"``.
        matrix: the 3x3 float64 matrix mapping image 0 to image 1 (``x1 ~ H x0``, or
            ``x1^T F x0 = 0``), or None when it could not be estimated.
        inliers: ``(K,)`` bool, one per match.
        message: why ``matrix`` is None, else "".
    """

    model: str
    matrix: np.ndarray | None
    inliers: np.ndarray
    message: str = ""

    @property
    def success(self) -> bool:
        return self.matrix is not None

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def verify(
    features0: Features,
    features1: Features,
    matches: Matches,
    model: str = "homography",
    threshold: float = 3.0,
    confidence: float = 0.9999,
    max_iters: int = 10000,
) -> Verification:
    """Fit a homography or a fundamental matrix to the matches with OpenCV's USAC MAGSAC++
    (Barath et al. 2020) and return it with the inlier mask.

    Args:
        features0, features1, matches: from :func:`keypoints.detect` and :func:`match`;
            keypoints in original-image pixels.
        model: ``"homography"`` (needs 4 matches) or ``"fundamental"`` (needs 8).
        threshold: inlier threshold in pixels (reprojection error for H, distance to the
            epipolar line for F).

    With too few matches, or when no model is found, ``matrix`` is None, every match is an
    outlier, and ``message`` says why.
    """
    import cv2

    if model not in MODELS:
        raise ConfigError(
            f"unknown model '{model}'{closest(model, MODELS)}; allowed: {', '.join(MODELS)}"
        )
    if not threshold > 0:
        raise ConfigError(f"threshold={threshold!r} is out of range; allowed: > 0 pixels")
    k = len(matches)
    none = np.zeros(k, dtype=bool)
    if k < MODELS[model]:
        return Verification(model, None, none, f"a {model} needs {MODELS[model]} matches, got {k}")
    idx = matches.indices.cpu().numpy()
    p0 = features0.keypoints.cpu().numpy()[idx[:, 0]].astype(np.float64)
    p1 = features1.keypoints.cpu().numpy()[idx[:, 1]].astype(np.float64)
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
    if matrix is None or mask is None or matrix.shape != (3, 3):
        return Verification(model, None, none, f"no {model} found among {k} matches")
    return Verification(model, matrix, mask.ravel().astype(bool))
