"""Two images in, keypoints, matches and a verified geometric model out.

:func:`match_images` is what ``keypoints match`` and the web demo (``keypoints demo``) run: a
pipeline (a preset with explicit options on top, see :func:`keypoints.presets.compose`), the
detector on both images, the matcher, the optional in-plane rotation search (see
:mod:`keypoints.rotation`) and the robust fit (see :func:`keypoints.verify`), with the time
each stage took.

Coordinates: keypoints are float32 (x, y) in each image's original pixels, pixel centres at
integers; with a rotation search, ``features1`` is in ``image1``'s own (unturned) frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .defaults import (
    DEFAULT_BACKEND,
    DEFAULT_DEVICE,
    DEFAULT_ESTIMATOR,
    DEFAULT_MAX_PIXELS,
    DEFAULT_PRECISION,
    DEFAULT_RANSAC_THRESHOLD,
    DEFAULT_ROTATION,
    GEOMETRIC_MODELS,
)
from .errors import ConfigError, closest
from .features import Features, Matches
from .matching import Verification, verify

if TYPE_CHECKING:  # presets' match_images calls back into this module
    from .presets import Preset

__all__ = ["PairResult", "match_images", "STAGES"]

#: The stages :attr:`PairResult.timings` reports, in order.
STAGES = ("load", "detect", "match", "verify")


@dataclass
class PairResult:
    """What :func:`match_images` found.

    Attributes:
        pipeline: the :class:`~keypoints.presets.Preset` that ran (detector, options, resize,
            matcher).
        features0: :class:`Features` of image 0, keypoints ``(N0, 2)`` float32.
        features1: :class:`Features` of image 1 in its own frame, keypoints ``(N1, 2)``.
        matches: :class:`Matches`, ``indices (K, 2)`` into the two keypoint sets.
        verification: the fitted model and its inlier mask ``(K,)`` bool, or None when no
            model was asked for and no rotation search ran.
        rotation: degrees image 1 was turned counterclockwise to match (0, 90, 180, 270), or
            None when no rotation search ran.
        rotation_inliers: the inliers of each turn tried, in order (empty without a search).
        timings: seconds per stage (:data:`STAGES`): loading the models, detection, matching,
            verification; with a rotation search each turn's work adds to its stage.
    """

    pipeline: Preset
    features0: Features
    features1: Features
    matches: Matches
    verification: Verification | None = None
    rotation: int | None = None
    rotation_inliers: tuple[int, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_inliers(self) -> int | None:
        """Inliers of the fitted model, or None when nothing was fitted."""
        return None if self.verification is None else self.verification.num_inliers

    @property
    def method(self) -> str:
        """The matcher that ran: ``"lightglue"`` or ``"mnn"``."""
        return self.matches.method or "mnn"

    def summary(self) -> dict[str, Any]:
        """The numbers as plain values (counts, the model, its threshold, seconds per stage)."""
        found = self.verification
        return {
            "pipeline": self.pipeline.name,
            "detector": self.pipeline.detector,
            "matcher": self.method,
            "keypoints0": len(self.features0),
            "keypoints1": len(self.features1),
            "matches": len(self.matches),
            "model": None if found is None else found.model,
            "inliers": self.num_inliers,
            "estimator": None if found is None else found.estimator,
            "ransac_threshold": None if found is None else found.threshold,
            "rotation": self.rotation,
            "seconds": {stage: round(self.timings.get(stage, 0.0), 4) for stage in STAGES},
        }


def _timed(timings: dict[str, float], stage: str, function: Callable) -> Callable:
    """``function`` adding the seconds of each call to ``timings[stage]``."""

    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timings[stage] += time.perf_counter() - start

    return run


def check_geometry(geometry: str | None) -> None:
    """Raise :class:`ConfigError` unless ``geometry`` is None or a geometric model's name."""
    if geometry is not None and geometry not in GEOMETRIC_MODELS:
        raise ConfigError(
            f"unknown geometric model '{geometry}'{closest(geometry, GEOMETRIC_MODELS)}; "
            f"allowed: {', '.join(GEOMETRIC_MODELS)}"
        )


def match_images(  # noqa: PLR0913 - the pipeline's parts, each with its default
    image0,
    image1,
    pipeline: Preset,
    *,
    geometry: str | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    ransac_threshold: float = DEFAULT_RANSAC_THRESHOLD,
    rotation: str = DEFAULT_ROTATION,
    matcher_weights=None,
    device: str = DEFAULT_DEVICE,
    backend: str = DEFAULT_BACKEND,
    precision: str = DEFAULT_PRECISION,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PairResult:
    """Detect two images, match them, and fit a geometric model to the matches.

    Args:
        image0: a path, PIL image, ``(H, W[, C])`` array or ``(C, H, W)`` tensor.
        image1: the same forms.
        pipeline: what to run (:func:`keypoints.load_preset` or
            :func:`keypoints.presets.compose`).
        geometry: ``"homography"``, ``"fundamental"`` or None (no fit; a rotation search still
            fits a fundamental matrix to pick the turn, and reports it).
        estimator: ``"poselib"`` or ``"opencv"`` (see :func:`keypoints.verify`).
        ransac_threshold: the estimator's inlier threshold in pixels.
        rotation: ``"auto"`` (also try image 1 at 90, 180 and 270 degrees, upright learned
            detectors only) or ``"none"``.
        matcher_weights: other LightGlue weights (see :func:`keypoints.matching.load_matcher`).
        device: torch device (``"auto"``: CUDA when available).
        backend: ``"auto"``, ``"torch"`` or ``"onnxruntime"`` for the dense network.
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"fast"``.
        max_pixels: images (and exact resize sizes) with more pixels are refused.

    Returns:
        :class:`PairResult`.

    Raises:
        KeypointsError: bad images, options or weights (one line each).
    """
    from .detection import detect
    from .matching import lightglue_weights_for, load_matcher
    from .models.registry import load_model
    from .rotation import searches

    check_geometry(geometry)
    timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    start = time.perf_counter()
    net = load_model(pipeline.detector, device, backend, precision, **pipeline.options)
    extra: dict[str, Any] = {} if matcher_weights is None else {"matcher": matcher_weights}
    if pipeline.matcher != "mnn":
        extra.update(precision=precision, device=device)
    if pipeline.matcher == "lightglue":  # missing weights fail now, not after detecting
        load_matcher(extra.get("matcher") or lightglue_weights_for(net.name), device,
                     precision=precision)  # fmt: skip
    timings["load"] = time.perf_counter() - start

    def detect_raw(images):
        return detect(images, net, resize=pipeline.resize, max_pixels=max_pixels)

    detect_many = _timed(timings, "detect", detect_raw)
    match = _timed(timings, "match", lambda a, b: pipeline.match(a, b, **extra))
    fit = _timed(timings, "verify", lambda a, b, m: verify(
        a, b, m, geometry or "fundamental", ransac_threshold, estimator=estimator))  # fmt: skip

    if searches(rotation, net.name):  # the turn of image1 with the most inliers
        from .image import to_array
        from .rotation import search_rotation

        features0 = detect_many(image0)[0]
        found = search_rotation(features0, to_array(image1), lambda a: detect_many(a)[0],
                                match, fit)  # fmt: skip
        return PairResult(pipeline, features0, found.features1, found.matches,
                          found.verification, found.degrees, tuple(found.inliers),
                          timings)  # fmt: skip
    features0, features1 = detect_many([image0, image1])
    matches = match(features0, features1)
    found = fit(features0, features1, matches) if geometry else None
    return PairResult(pipeline, features0, features1, matches, found, None, (), timings)
