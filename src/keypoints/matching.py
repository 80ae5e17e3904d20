"""Matching descriptors and verifying matches geometrically.

``match`` pairs keypoints by mutual nearest neighbour (optionally with Lowe's ratio test and a
distance cap), in bounded memory, or with LightGlue (the weights that fit the features' model);
``method="auto"`` (the default) takes LightGlue when those weights are available offline (bundled
or cached) and mutual nearest neighbour otherwise, and says which in ``Matches.method``;
``match_batch`` matches many pairs (LightGlue: batched, padded with masks);
``verify`` fits a homography or a fundamental matrix with a robust estimator (PoseLib's
LO-RANSAC or OpenCV's USAC MAGSAC++, see :mod:`keypoints.estimators`) and reports the inliers.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import numpy as np
import torch

from .defaults import (
    DEFAULT_DEVICE,
    DEFAULT_ESTIMATOR,
    DEFAULT_MATCH_BATCH_SIZE,
    DEFAULT_MATCHER,
    DEFAULT_PRECISION,
    DEFAULT_RANSAC_THRESHOLD,
    GEOMETRIC_MODELS,
    MATCHERS,
)
from .devices import resolve_device
from .errors import ConfigError, closest
from .features import Features, Matches
from .models.config import Config, config_class
from .models.lightglue import LightGlue, LightGlueMatcher, release_cached
from .models.registry import MODELS as MODELS_BY_NAME
from .models.registry import detector_info

__all__ = [
    "match",
    "match_batch",
    "load_matcher",
    "lightglue_weights_for",
    "verify",
    "Verification",
    "NearestNeighbourConfig",
    "METHODS",
    "resolve_method",
    "offline_weights",
]

METHODS = MATCHERS
#: LightGlue options :func:`match` accepts
LIGHTGLUE_OPTIONS = ("depth_confidence", "width_confidence", "filter_threshold")
METRICS = ("l2", "cosine", "hamming")
MODELS = GEOMETRIC_MODELS  # model -> minimum number of matches
#: Elements of one distance block (rows x columns); 2^24 float32 = 64 MiB.
BLOCK_ELEMENTS = 1 << 24


@config_class
class NearestNeighbourConfig(Config):
    """Options of mutual nearest-neighbour matching.

    ``ratio``: Lowe's ratio test (Lowe 2004), keep a match only when its distance is below
    ``ratio`` times the distance to the second nearest neighbour; ``max_distance``: drop
    matches farther than this; ``metric``: ``"l2"`` (default for float descriptors),
    ``"cosine"`` (``1 - cos``) or ``"hamming"`` (default and only choice for binary ones);
    ``block_elements``: the distance matrix is computed in row blocks of at most this many
    elements (16k x 16k keypoints need about 64 MiB at a time).
    """

    ratio: float | None = None
    max_distance: float | None = None
    metric: str | None = None
    block_elements: int = BLOCK_ELEMENTS

    def validate(self) -> None:
        """Raise :class:`ConfigError` when an option is out of range or the metric unknown."""
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ConfigError(f"ratio={self.ratio!r} is out of range; allowed: (0, 1]")
        if self.metric is not None and self.metric not in METRICS:
            raise ConfigError(f"unknown metric '{self.metric}'{closest(self.metric, METRICS)}")
        if self.block_elements < 1:
            raise ConfigError(f"block_elements={self.block_elements} must be >= 1")


def _as_float(features: Features) -> torch.Tensor:
    """Descriptors as float32; binary (uint8) ones unpacked to +-1 per bit."""
    d = features.descriptors
    if features.binary or d.dtype == torch.uint8:
        bits = np.unpackbits(d.cpu().numpy(), axis=1).astype(np.float32)
        return torch.from_numpy(bits * 2 - 1)
    return d.float()


def _distances(d0: torch.Tensor, d1: torch.Tensor, metric: str, sq1: torch.Tensor | None):
    """Block ``(len(d0), len(d1))`` of a quantity ordered like the distance.

    The quantity is squared L2, ``1 - cos`` or Hamming bits (:func:`_finish` turns the selected
    ones into distances).
    """
    if metric == "l2" and sq1 is not None:  # |a|^2 + |b|^2 - 2 a.b, in place
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
    method: str = DEFAULT_MATCHER,
    *,
    matcher=None,
    device: str | torch.device | None = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION,
    **options,
) -> Matches:
    """Match the descriptors of two images.

    Args:
        features0: :class:`Features` of image 0, ``descriptors (N0, D)``.
        features1: :class:`Features` of image 1, ``descriptors (N1, D)`` of the same kind.
        method: ``"auto"`` (default): ``"lightglue"`` when weights trained on the features'
            detector are available offline (bundled with the package: ALIKED-n16/n16rot's and
            XFeat's; or in the cache) or ``matcher`` is given, else ``"mnn"`` (see
            :func:`resolve_method`). ``"mnn"``, mutual nearest neighbour: i and j match when
            each is the other's nearest neighbour. ``"lightglue"``: see :func:`match_batch`.
        matcher: LightGlue only: its weights (see :func:`load_matcher`; default: the weights
            trained on the features' detector, from its registry entry).
        device: LightGlue only: where it runs (default ``"auto"``: CUDA when available;
            ignored when ``method="auto"`` chooses ``"mnn"``).
        precision: LightGlue only: ``"fp32"``, ``"bf16"``, or ``"fast"``/``"int8"`` (bf16
            where the CPU has it; likewise).
        **options: the method's options. ``"mnn"``: ``ratio``, ``max_distance``, ``metric``,
            ``block_elements`` (see :class:`NearestNeighbourConfig`). ``"lightglue"``:
            ``depth_confidence``, ``width_confidence``, ``filter_threshold``.

    Returns:
        :class:`Matches` with ``indices (K, 2)`` int64 sorted by the first index,
        ``distances (K,)`` float32 (LightGlue: ``1 - scores``, and ``scores (K,)``) and
        ``method``, the method used.
    """
    chosen = resolve_method(method, [(features0, features1)], matcher)
    if chosen == "lightglue":
        pair = [(features0, features1)]
        return match_batch(
            pair, "lightglue", matcher=matcher, device=device, precision=precision, **options
        )[0]
    conf = _nearest_neighbour_config(matcher, device, precision, options, method == "mnn")
    return _mutual_nearest(features0, features1, conf)


def resolve_method(method: str, pairs=(), matcher=None) -> str:
    """The method ``method`` stands for on ``pairs`` of :class:`Features`.

    ``"mnn"`` and ``"lightglue"`` stand for themselves. ``"auto"`` is ``"lightglue"`` when
    ``matcher`` weights are given, or when every feature comes from one detector whose
    registry entry names LightGlue weights that are available offline (bundled with the
    package or already cached: no download is ever started by ``"auto"``); otherwise
    ``"mnn"``. Unknown methods raise :class:`ConfigError`.
    """
    check_method(method)
    if method != "auto":
        return method
    if matcher is not None:
        return "lightglue"
    models = {f.model for pair in pairs for f in pair}
    return "lightglue" if len(models) == 1 and offline_weights(models.pop()) else "mnn"


def offline_weights(model: str | None) -> str | None:
    """The LightGlue weights ``method="auto"`` uses for detector ``model``'s features, or None.

    Those of its registry entry, when they are available offline (bundled or cached).
    """
    info = detector_info(model)
    weights = info.matcher_weights if info is not None else None
    return weights if weights is not None and release_cached(weights) else None


def _nearest_neighbour_config(matcher, device, precision: str, options: dict, strict=True):
    """The options of mutual nearest-neighbour matching, checked once.

    LightGlue's arguments (unless ``strict`` is False: ``"auto"`` chose nearest neighbour) and
    unknown names raise :class:`ConfigError`.
    """
    chosen_device = device not in (None, DEFAULT_DEVICE)
    if strict and (matcher is not None or chosen_device or precision != DEFAULT_PRECISION):
        name = "matcher" if matcher is not None else "device" if chosen_device else "precision"
        raise ConfigError(f"'{name}' applies to method='lightglue' only")
    unknown = sorted(set(options) - set(NearestNeighbourConfig.option_names))
    if unknown:
        raise ConfigError(
            f"unknown option '{unknown[0]}' for method='mnn'"
            f"{closest(unknown[0], NearestNeighbourConfig.option_names)}; valid options: "
            f"{', '.join(NearestNeighbourConfig.option_names)}"
        )
    return NearestNeighbourConfig(**options)


def _mutual_nearest(features0: Features, features1: Features, conf) -> Matches:
    """Mutual nearest neighbours with the ratio test and distance cap of ``conf``."""
    binary = features0.binary or features1.binary
    metric = conf.metric or ("hamming" if binary else "l2")
    if binary != (metric == "hamming"):
        raise ConfigError("binary descriptors (ORB) are matched with metric='hamming' only")
    if features0.binary != features1.binary:
        raise ConfigError("cannot match binary descriptors with float descriptors")
    d0, d1 = _as_float(features0), _as_float(features1)
    n0, n1 = len(d0), len(d1)
    if n0 == 0 or n1 == 0:
        return _empty("mnn")
    if d0.shape[1] != d1.shape[1]:
        raise ConfigError(
            f"descriptor sizes differ ({d0.shape[1]} vs {d1.shape[1]}): were both images "
            "described by the same model?"
        )
    # a non-finite descriptor row (NaN, inf) matches nothing and leaves the others' matches
    # as they would be without it (its distances become +inf instead of poisoning the minima)
    finite = bool(torch.isfinite(d0).all() and torch.isfinite(d1).all())
    nn01, dist01, second01, nn10 = _nearest_neighbours(d0, d1, metric, conf, finite)
    keep = nn10[nn01] == torch.arange(n0)
    if not finite:
        keep &= torch.isfinite(dist01)
    if conf.ratio is not None:
        keep &= dist01 < conf.ratio * second01
    if conf.max_distance is not None:
        keep &= dist01 <= conf.max_distance
    i0 = torch.nonzero(keep)[:, 0]
    return Matches(torch.stack([i0, nn01[i0]], dim=1), dist01[i0].float(), method="mnn")


def _nearest_neighbours(d0: torch.Tensor, d1: torch.Tensor, metric: str, conf,
                        finite: bool = True):  # fmt: skip
    """Nearest neighbours both ways, computed in row blocks.

    Returns each row's nearest neighbour in ``d1``, its distance, the second nearest distance
    (with a ratio test), and each column's nearest row.
    """
    n0, n1 = len(d0), len(d1)
    sq1 = (d1 * d1).sum(1) if metric == "l2" else None
    rows = max(1, conf.block_elements // n1)
    nn01 = torch.empty(n0, dtype=torch.long)
    dist01 = torch.empty(n0)
    second01 = torch.full((n0,), float("inf"))
    best10 = torch.full((n1,), float("inf"))
    nn10 = torch.zeros(n1, dtype=torch.long)
    for start in range(0, n0, rows):
        block = _distances(d0[start : start + rows], d1, metric, sq1)
        if not finite:
            block.nan_to_num_(nan=float("inf"), posinf=float("inf"), neginf=float("inf"))
        stop = start + len(block)
        if conf.ratio is not None and n1 >= 2:  # the second nearest neighbour is needed
            values, index = block.topk(2, dim=1, largest=False)
            nn01[start:stop], dist01[start:stop] = index[:, 0], values[:, 0]
            second01[start:stop] = values[:, 1]
        else:
            dist01[start:stop], nn01[start:stop] = block.min(dim=1)
        col_best, col_arg = block.min(dim=0)
        better = col_best < best10  # strict: the first (lowest) row wins ties, as one argmin
        best10 = torch.where(better, col_best, best10)
        nn10 = torch.where(better, col_arg + start, nn10)
    return nn01, _finish(dist01, metric), _finish(second01, metric), nn10


def check_method(method: str) -> None:
    """Raise :class:`ConfigError` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise ConfigError(
            f"unknown matching method '{method}'{closest(method, METHODS)}; "
            f"available: {', '.join(METHODS)}"
        )


_MATCHERS: dict[tuple[str, str], LightGlue] = {}


def load_matcher(
    weights="superpoint",
    device: str | torch.device | None = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION,
    **options,
) -> LightGlueMatcher:
    """A LightGlue (:class:`keypoints.models.lightglue.LightGlue`), loaded once per process.

    Args:
        weights: a weights name: bundled (``"aliked"``, ``"xfeat-lighterglue"``) or one of
            cvg's releases (``"superpoint"``, ``"sift"``, ``"disk"``, ``"doghardnet"``;
            downloaded once and cached); a checkpoint file (cvg's layout, verlab's
            ``xfeat-lighterglue.pt``, or ours); an already loaded LightGlue; or a model holding
            one as ``.matcher`` (such as :class:`keypoints.LightGlueForKeypointMatching`, which
            loads Hub ids).
        device: where it runs (default ``"auto"``: CUDA when available, else the CPU; a
            matcher passed in stays where it is).
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"fast"`` (see
            ``LightGlueMatcher.set_precision``).
        **options: ``depth_confidence``, ``width_confidence``, ``filter_threshold``.

    Returns:
        The matcher; options and a precision other than the loaded one give a copy sharing
        the weights.
    """
    keep = device == DEFAULT_DEVICE  # "auto" leaves a matcher passed in where it is
    device = resolve_device(device)
    wrapped = getattr(weights, "matcher", None)
    if isinstance(wrapped, LightGlueMatcher):
        weights = wrapped
    if isinstance(weights, LightGlueMatcher):
        net = weights if device is None or keep else weights.to(device)
    else:
        key = (os.fspath(weights), str(device))
        if key not in _MATCHERS:
            net = LightGlue.from_pretrained(weights)
            _MATCHERS[key] = net.to(device) if device is not None else net
        net = _MATCHERS[key]
    if options:
        unknown = sorted(set(options) - set(LIGHTGLUE_OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown LightGlue option '{unknown[0]}'{closest(unknown[0], LIGHTGLUE_OPTIONS)}"
                f"; valid options: {', '.join(LIGHTGLUE_OPTIONS)}"
            )
        config = net.config.replace(**options)
        net = copy.copy(net)  # shares the weights
        net.config = config
    if precision != net.precision:
        net = copy.copy(net).set_precision(precision)
    return net


def lightglue_weights_for(model: str | None) -> str:
    """The LightGlue release trained on the features of detector ``model``.

    That is its registry entry's ``matcher_weights``; :class:`ConfigError` when there is none.
    """
    hint = "pass matcher=<weights> (CLI: --matcher-weights), e.g. 'aliked', 'disk', 'sift'"
    if model is None:
        raise ConfigError(f"the features do not say which model made them; {hint}")
    info = detector_info(model)
    if info is None or info.matcher_weights is None:
        fitting = [name for name, entry in MODELS_BY_NAME.items() if entry.matcher_weights]
        raise ConfigError(
            f"no released LightGlue weights were trained on '{model}' features; LightGlue "
            f"fits {', '.join(fitting)}. To use other weights, {hint}"
        )
    return info.matcher_weights


def _weights_for(pairs) -> str:
    """The release LightGlue weights that fit the features' model (all pairs alike)."""
    models = {f.model for pair in pairs for f in pair}
    if len(models) != 1:
        shown = ", ".join(sorted(str(m) for m in models))
        raise ConfigError(f"cannot match features of different models ({shown}) with LightGlue")
    return lightglue_weights_for(models.pop())


def _matcher_descriptors(features: Features, input_dim: int) -> torch.Tensor:
    """The descriptors LightGlue reads.

    They are float, transformed as the detector's registry entry says (SIFT's become RootSIFT).
    """
    if features.binary or features.descriptors.shape[1] != input_dim:
        raise ConfigError(
            f"LightGlue weights for {input_dim}-d float descriptors cannot match "
            f"'{features.model}' features ({features.descriptors.shape[1]}-d"
            f"{', binary' if features.binary else ''})"
        )
    descriptors = features.descriptors.float()
    info = detector_info(features.model)
    if info is not None and info.matcher_descriptors is not None:
        descriptors = info.matcher_descriptors(descriptors)
    return descriptors


def _lightglue_inputs(net, pairs):
    """Pad ``pairs`` of :class:`Features` into LightGlue's batched inputs on ``net``'s device.

    The inputs: keypoints (B, 2, N, 2), descriptors (B, 2, N, D), image sizes (B, 2, 2), mask
    (B, 2, N), and scales/orientations (B, 2, N, 2) when the weights read them.
    """
    c = net.config
    n = max(len(f) for pair in pairs for f in pair)
    batch = len(pairs)
    keypoints = torch.zeros(batch, 2, n, 2)
    descriptors = torch.zeros(batch, 2, n, c.input_dim)
    sizes = torch.zeros(batch, 2, 2)
    mask = torch.zeros(batch, 2, n, dtype=torch.bool)
    extra = torch.zeros(batch, 2, n, 2) if c.add_scale_ori else None
    for b, pair in enumerate(pairs):
        for side, f in enumerate(pair):
            k = len(f)
            keypoints[b, side, :k] = f.keypoints
            descriptors[b, side, :k] = _matcher_descriptors(f, c.input_dim)
            sizes[b, side] = torch.tensor(f.image_size, dtype=torch.float32)
            mask[b, side, :k] = True
            if extra is not None:
                if f.scales is None or f.orientations is None:
                    raise ConfigError(
                        "these LightGlue weights read keypoint scales and orientations, which "
                        f"'{f.model}' features do not have (SIFT's do)"
                    )
                extra[b, side, :k, 0], extra[b, side, :k, 1] = f.scales, f.orientations
    tensors = (keypoints, descriptors, sizes, mask, extra)
    return [t.to(net.device) if t is not None else None for t in tensors]


def match_batch(
    pairs,
    method: str = DEFAULT_MATCHER,
    batch_size: int = DEFAULT_MATCH_BATCH_SIZE,
    matcher=None,
    device: str | torch.device | None = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION,
    **options,
) -> list[Matches]:
    """Match many pairs of :class:`Features`; one :class:`Matches` per pair, in order.

    Args:
        pairs: ``(features0, features1)`` pairs.
        method: ``"mnn"``: :func:`match` on each pair; ``"lightglue"``: LightGlue (Lindenberger
            et al., ICCV 2023) on ``batch_size`` pairs per forward pass, padded to the longest
            image with masks; ``"auto"`` (default): one of them for all pairs, chosen by
            :func:`resolve_method`.
        batch_size: pairs per LightGlue forward pass.
        matcher: LightGlue's weights, anything :func:`load_matcher` takes (default: the
            release trained on the features' detector, from its registry entry).
        device: where LightGlue runs (default ``"auto"``, see :func:`load_matcher`).
        precision: ``"bf16"`` (or ``"fast"``) runs LightGlue's transformer layers in bfloat16
            (2x faster linear layers on CPUs with avx512_bf16; attention, most of the time
            at 2048 keypoints, only gains with AMX; matches agree with fp32 to within a few
            percent).
        **options: the method's options (see :func:`match`).

    Keypoints are normalised by each image's ``image_size``; descriptors are transformed as
    the detector's registry entry says (SIFT's become RootSIFT), and scales and orientations
    are passed to weights that read them. Pairs are batched in order of size (less padding);
    results come back in input order, carrying LightGlue's ``scores``.
    """
    pairs = list(pairs)
    chosen = resolve_method(method, pairs, matcher)
    if chosen == "mnn":  # mutual nearest neighbour, options checked once for all pairs
        conf = _nearest_neighbour_config(matcher, device, precision, options, method == "mnn")
        return [_mutual_nearest(a, b, conf) for a, b in pairs]
    for name in options:
        if name in NearestNeighbourConfig.option_names:
            raise ConfigError(f"'{name}' is a nearest-neighbour option; LightGlue does not use it")
    if not pairs:
        return []
    net = load_matcher(matcher or _weights_for(pairs), device, precision, **options)
    results: list[Matches] = [_empty("lightglue") for _ in pairs]
    todo = sorted((i for i, (a, b) in enumerate(pairs) if len(a) and len(b)),
                  key=lambda i: max(len(pairs[i][0]), len(pairs[i][1])))  # fmt: skip
    step = max(1, batch_size)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        inputs = _lightglue_inputs(net, [pairs[i] for i in chunk])
        with torch.inference_mode():
            matches, scores, _ = net(*inputs)
        for row, i in enumerate(chunk):
            m0, s0 = matches[row, 0, : len(pairs[i][0])].cpu(), scores[row, 0].cpu()
            i0 = torch.nonzero(m0 > -1)[:, 0]
            values = s0[i0].float()
            results[i] = Matches(torch.stack([i0, m0[i0]], 1), 1 - values, values, "lightglue")
    return results


def _empty(method: str) -> Matches:
    scores = torch.zeros(0) if method == "lightglue" else None
    return Matches(torch.zeros((0, 2), dtype=torch.long), torch.zeros(0), scores, method)


@dataclass
class Verification:
    """Result of :func:`verify`.

    Attributes:
        model: ``"homography"`` or ``"fundamental"``.
        matrix: the 3x3 float64 matrix mapping image 0 to image 1 (``x1 ~ H x0``, or
            ``x1^T F x0 = 0``), or None when it could not be estimated.
        inliers: ``(K,)`` bool, one per match.
        message: why ``matrix`` is None, else "".
        estimator: the robust estimator that fitted it (``"poselib"`` or ``"opencv"``).
        threshold: its inlier threshold in pixels.
    """

    model: str
    matrix: np.ndarray | None
    inliers: np.ndarray
    message: str = ""
    estimator: str = DEFAULT_ESTIMATOR
    threshold: float = DEFAULT_RANSAC_THRESHOLD

    def __repr__(self) -> str:
        """One line: the model, inliers out of matches, the estimator (not the arrays)."""
        found = "fitted" if self.matrix is not None else f"no matrix: {self.message}"
        return (
            f"Verification({self.model}, {self.num_inliers}/{len(self.inliers)} inliers, "
            f"{found}, {self.estimator} {self.threshold} px)"
        )

    @property
    def success(self) -> bool:
        """True when a matrix was estimated."""
        return self.matrix is not None

    @property
    def num_inliers(self) -> int:
        """The number of inlier matches."""
        return int(self.inliers.sum())


def verify(
    features0: Features,
    features1: Features,
    matches: Matches,
    model: str = "homography",
    threshold: float = DEFAULT_RANSAC_THRESHOLD,
    confidence: float = 0.9999,
    max_iters: int = 10000,
    estimator: str = DEFAULT_ESTIMATOR,
) -> Verification:
    """Fit a homography or a fundamental matrix to the matches, with the inlier mask.

    Args:
        features0: :class:`Features` of image 0, from :func:`keypoints.detect`; keypoints in
            original-image pixels.
        features1: :class:`Features` of image 1, from :func:`keypoints.detect`; keypoints in
            original-image pixels.
        matches: the matches between them, from :func:`match`.
        model: ``"homography"`` (needs 4 matches) or ``"fundamental"`` (needs 8).
        threshold: inlier threshold in pixels (reprojection error for H, distance to the
            epipolar line for F).
        confidence: the desired confidence of the estimate (default 0.9999).
        max_iters: the maximum number of iterations (default 10000).
        estimator: ``"poselib"`` (PoseLib's LO-RANSAC with a final refinement) or
            ``"opencv"`` (USAC MAGSAC++, Barath et al. 2020); see :mod:`keypoints.estimators`.

    Returns:
        :class:`Verification` (recording ``estimator`` and ``threshold``). With too few
        matches, or when no model is found, ``matrix`` is None, every match is an outlier, and
        ``message`` says why.
    """
    from .estimators import fit

    k = len(matches)
    idx = matches.indices.cpu().numpy()
    p0 = features0.keypoints.cpu().numpy()[idx[:, 0]].astype(np.float64)
    p1 = features1.keypoints.cpu().numpy()[idx[:, 1]].astype(np.float64)
    matrix, inliers = fit(p0, p1, model, estimator, threshold, confidence, max_iters)
    found = Verification(model, matrix, inliers, "", estimator, threshold)
    if k < MODELS[model]:
        found.message = f"a {model} needs {MODELS[model]} matches, got {k}"
    elif matrix is None:
        found.message = f"no {model} found among {k} matches"
    return found
