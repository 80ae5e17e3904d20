"""Presets: named pipelines of a detector, its options, the preprocessing and a matcher.

A preset bundles them (as hloc's ``confs``), so that ``--preset aliked-lightglue`` means the same
everywhere.

``keypoints.load_preset(name)`` returns a :class:`Preset`; ``keypoints presets`` lists them with
their licenses and whether they run offline now. The CLI's ``--preset`` on ``detect``,
``match``, ``extract``, ``match-pairs`` and ``eval`` applies one; options given explicitly win.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .defaults import DEFAULT_MATCHER, DEFAULT_MODEL, DEFAULT_RESIZE, MATCHERS
from .errors import ConfigError, closest
from .features import Features, Matches
from .models.lightglue import release_cached, weights_license
from .models.protocol import DetectorInfo
from .models.registry import MODELS, load_model

__all__ = ["Preset", "PRESETS", "load_preset", "list_presets", "compose", "custom", "UNSET"]

#: ``resize`` was not given to :func:`compose` (None means the native resolution).
UNSET: Any = object()


@dataclass(frozen=True)
class Preset:
    """A named pipeline: detector + options + preprocessing + matcher.

    Attributes:
        name: the preset's name.
        description: one line for people.
        detector: a registered detector name (see :func:`keypoints.list_models`).
        options: the detector's options (``max_keypoints``, ``threshold``, ...).
        resize: the preprocessing: longest side, ``(height, width)``, or None (native).
        matcher: ``"auto"`` (LightGlue when the weights of the detector's entry are available
            offline, else mutual nearest neighbour), ``"mnn"`` or ``"lightglue"`` (the weights
            of the detector's entry).
        matcher_options: the matcher's options (``ratio``; ``filter_threshold``, ...).
    """

    name: str
    description: str
    detector: str
    options: Mapping[str, Any] = field(default_factory=dict)
    resize: int | tuple[int, int] | None = DEFAULT_RESIZE
    matcher: str = DEFAULT_MATCHER
    matcher_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse an unknown matcher."""
        if self.matcher not in MATCHERS:
            raise ConfigError(
                f"unknown matcher '{self.matcher}'{closest(self.matcher, MATCHERS)}; "
                f"available: {', '.join(MATCHERS)}"
            )

    @property
    def info(self) -> DetectorInfo | None:
        """The detector's registry entry (None for a checkpoint path)."""
        return MODELS.get(self.detector)

    @property
    def matcher_weights(self) -> str | None:
        """The LightGlue weights the matcher uses.

        None for nearest neighbour (chosen, or what ``"auto"`` falls back to when the weights are
        not available offline), or when the features' detector decides.
        """
        from .matching import offline_weights

        if self.matcher == "auto":
            return offline_weights(self.detector)
        info = self.info
        return info.matcher_weights if info and self.matcher == "lightglue" else None

    @property
    def license(self) -> str:
        """The licenses of the weights involved (the code is MIT)."""
        detector = self.info.license if self.info else "the checkpoint's"
        weights = self.matcher_weights
        return detector if weights is None else f"{detector}; matcher: {weights_license(weights)}"

    @property
    def offline(self) -> bool:
        """True when every weight it needs is available now without a download."""
        weights = self.matcher_weights
        detector = self.info.offline if self.info else os.path.exists(self.detector)
        return detector and (weights is None or release_cached(weights))

    def load_detector(self, **kwargs):
        """The detector with the preset's options.

        ``kwargs`` go to :func:`keypoints.load_model` (``device``, ``backend``, ``precision``,
        other options).
        """
        return load_model(self.detector, **{**self.options, **kwargs})

    def detect(self, images, **kwargs) -> list[Features]:
        """:func:`keypoints.detect` with the preset's detector, options and preprocessing.

        ``kwargs`` override them.
        """
        from .detection import detect

        options = {"resize": self.resize, **self.options, **kwargs}
        return detect(images, self.detector, **options)

    def match(self, features0: Features, features1: Features, **kwargs) -> Matches:
        """:func:`keypoints.match` with the preset's matcher and options.

        ``kwargs`` override the options (``precision``, ``device``, ``matcher`` weights for
        LightGlue).
        """
        from .matching import match

        return match(features0, features1, self.matcher, **{**self.matcher_options, **kwargs})

    def match_images(
        self, image0, image1, rotation: str = "none", geometry: str = "fundamental"
    ) -> tuple[Features, Features, Matches]:
        """Detect both images and match them: ``(features0, features1, matches)``.

        ``rotation="auto"`` also tries ``image1`` at 90, 180 and 270 degrees and keeps the turn
        whose matches have the most ``geometry`` inliers (``"fundamental"`` or
        ``"homography"``, fitted by :func:`keypoints.verify`); ``features1`` is then in
        ``image1``'s own frame (see :mod:`keypoints.rotation`). The whole pipeline, with the
        fit and seconds per stage: :func:`keypoints.match_images`.
        """
        from .pair import match_images
        from .rotation import searches

        fit = geometry if searches(rotation, self.detector) else None  # picks the turn only
        found = match_images(image0, image1, self, geometry=fit, rotation=rotation)
        return found.features0, found.features1, found.matches

    def as_dict(self) -> dict[str, Any]:
        """The preset as plain values, with its license and offline availability."""
        return {
            "name": self.name,
            "description": self.description,
            "detector": self.detector,
            "options": dict(self.options),
            "resize": self.resize,
            "matcher": self.matcher,
            "matcher_weights": self.matcher_weights,
            "matcher_options": dict(self.matcher_options),
            "license": self.license,
            "offline": self.offline,
        }


def _presets(*presets: Preset) -> dict[str, Preset]:
    return {p.name: p for p in presets}


_TOP_2048 = {"max_keypoints": 2048}

#: The named pipelines, in listing order.
PRESETS: dict[str, Preset] = _presets(
    Preset("aliked-lightglue", "ALIKED-n16rot + LightGlue (bundled): the default, accurate "
           "pipeline", DEFAULT_MODEL, _TOP_2048, matcher="lightglue"),
    Preset("aliked-mnn", "ALIKED-n16rot, mutual nearest neighbour", DEFAULT_MODEL, _TOP_2048,
           matcher="mnn"),
    Preset("superpoint-lightglue", "SuperPoint + LightGlue, as LightGlue's README pairs them",
           "superpoint", {"max_keypoints": 2048, "threshold": 0.0005}, matcher="lightglue"),
    Preset("sift-lightglue", "SIFT + LightGlue (RootSIFT, scales and orientations)", "sift",
           _TOP_2048, matcher="lightglue"),
    Preset("sift-mnn", "SIFT, mutual nearest neighbour with Lowe's ratio test 0.8", "sift",
           _TOP_2048, matcher="mnn", matcher_options={"ratio": 0.8}),
    Preset("disk-lightglue", "DISK + LightGlue (cvg's release weights, downloaded once)", "disk",
           _TOP_2048, matcher="lightglue"),
    Preset("xfeat-lighterglue", "XFeat + LighterGlue (bundled): a learned pipeline at SIFT's speed",
           "xfeat", {"max_keypoints": 4096}, matcher="lightglue"),
    Preset("fast", "ALIKED-t16 at 640 px, 1024 keypoints, mutual nearest neighbour", "aliked-t16",
           {"max_keypoints": 1024}, resize=640, matcher="mnn"),
)  # fmt: skip


def load_preset(name: str | Preset) -> Preset:
    """The preset ``name`` (see :data:`PRESETS`); a :class:`Preset` is returned as is."""
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset '{name}'{closest(name, PRESETS)}; available: {', '.join(PRESETS)}"
        )
    return PRESETS[name]


def list_presets() -> list[dict[str, Any]]:
    """One dict per preset (see :meth:`Preset.as_dict`)."""
    return [p.as_dict() for p in PRESETS.values()]


def custom(
    detector: str,
    options: Mapping[str, Any] | None = None,
    resize: int | Sequence[int] | None = DEFAULT_RESIZE,
    matcher: str = DEFAULT_MATCHER,
    matcher_options: Mapping[str, Any] | None = None,
) -> Preset:
    """A pipeline that is not a named preset (named after its detector) with the given parts."""
    if resize is not None and not isinstance(resize, int):
        resize = (int(resize[0]), int(resize[1]))
    return Preset(detector, "a custom pipeline", detector, dict(options or {}), resize, matcher,
                  dict(matcher_options or {}))  # fmt: skip


def given(**options) -> dict[str, Any]:
    """The options that were given (not None)."""
    return {k: v for k, v in options.items() if v is not None}


def compose(
    preset: str | Preset | None,
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    resize: Any = UNSET,
    matcher: str | None = None,
    matcher_options: Mapping[str, Any] | None = None,
) -> Preset:
    """A preset (if any) with the options given explicitly on top: explicit > preset > default.

    Args:
        preset: a preset name or :class:`Preset`, or None for a custom pipeline around ``model``
            (default: the default detector).
        model: the detector; with a preset it must be the preset's own.
        options: detector options; None values mean "not given".
        resize: the preprocessing (see :func:`keypoints.image.normalize_resize`); :data:`UNSET`
            keeps the preset's.
        matcher: ``"auto"``, ``"mnn"`` or ``"lightglue"``; None keeps the preset's (``"mnn"``
            when ``ratio`` or ``max_distance`` is given and the preset says ``"auto"``).
        matcher_options: the matcher's options; None values mean "not given".

    Returns:
        The :class:`Preset` to run.
    """
    base = load_preset(preset) if preset else custom(model or DEFAULT_MODEL)
    if preset and model is not None and model != base.detector:
        raise ConfigError(
            f"--model {model} conflicts with --preset {base.name} (whose detector is "
            f"{base.detector}); give one of them"
        )
    explicit = given(**(matcher_options or {}))
    if matcher is None and base.matcher == "auto" and set(explicit) & {"ratio", "max_distance"}:
        matcher = "mnn"  # nearest-neighbour options say which matcher is meant
    return dataclasses.replace(
        base,
        options={**base.options, **given(**(options or {}))},
        resize=base.resize if resize is UNSET else resize,
        matcher=matcher or base.matcher,
        matcher_options={**base.matcher_options, **explicit},
    )
