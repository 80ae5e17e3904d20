"""OpenCV's SIFT (Lowe 2004) and ORB (Rublee et al. 2011) as detectors.

Both implement :class:`~keypoints.models.protocol.Detector`: ``extract(prepared images)`` ->
:class:`~keypoints.Features` with scales and orientations, and ``detect_image(gray uint8 (H, W))``
-> keypoints (N, 2) float32 (x, y), scores (N,), descriptors (N, D), scales (N,) and orientations
(N,). OpenCV's pixel convention (centres at integers) is ours.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from ..features import Features
from ..image import Prepared
from .config import Config, check_max_keypoints, check_unit, config_class
from .protocol import (
    DetectorInfo,
    InfoFacts,
    Preprocessing,
    accepts_images,
    features_from_prepared,
    fingerprint,
)

__all__ = ["SIFTConfig", "ORBConfig", "SIFT", "ORB", "rootsift", "INFOS"]


def rootsift(descriptors):
    """RootSIFT (Arandjelovic & Zisserman 2012) of non-negative SIFT descriptors ``(N, 128)``.

    Numpy or torch, raw or L2-normalised (the L1 normalisation removes either scale): L1 normalise,
    square root, so the dot product is the Hellinger kernel; rows have unit L2 norm.
    """
    if isinstance(descriptors, torch.Tensor):
        return (descriptors / descriptors.sum(1, keepdim=True).clamp(min=1e-12)).sqrt()
    return np.sqrt(descriptors / np.maximum(descriptors.sum(1, keepdims=True), 1e-12))


@config_class
class SIFTConfig(Config):
    """SIFT options.

    ``max_keypoints`` (-1: all; else the best by response), ``threshold`` (OpenCV's
    contrastThreshold, 0.04), ``rootsift`` (RootSIFT, Arandjelovic & Zisserman 2012).
    """

    max_keypoints: int = -1
    threshold: float = 0.04
    rootsift: bool = False

    def validate(self) -> None:
        """Raise ConfigError when ``max_keypoints`` or ``threshold`` is out of range."""
        check_max_keypoints(self.max_keypoints)
        check_unit("threshold", self.threshold)


@config_class
class ORBConfig(Config):
    """ORB options.

    ``max_keypoints`` (OpenCV's nfeatures, default 2048), ``threshold`` (the FAST threshold as a
    fraction of 255, default 20/255 as OpenCV).
    """

    max_keypoints: int = 2048
    threshold: float = 20 / 255

    def validate(self) -> None:
        """Raise ConfigError when ``max_keypoints`` (>= 1) or ``threshold`` is out of range."""
        check_max_keypoints(self.max_keypoints, allow_all=False)
        check_unit("threshold", self.threshold)


@functools.cache
def _cv2_version() -> str:
    import cv2

    return cv2.__version__


def _info(name: str, dim: int, binary: bool = False, matcher: str | None = None,
          matcher_descriptors=None) -> DetectorInfo:  # fmt: skip
    return DetectorInfo(
        name=name,
        kind="handcrafted",
        descriptor_dim=dim,
        license="Apache-2.0 (OpenCV)",
        weights="none",
        load=lambda: {"sift": SIFT, "rootsift": lambda: SIFT(rootsift=True), "orb": ORB}[name](),
        available=lambda: True,
        binary=binary,
        matcher_weights=matcher,
        matcher_descriptors=matcher_descriptors,
        preprocessing=Preprocessing(channels=1, pad_multiple=1, uint8=True),
        rotation_invariant=True,
    )


#: The registry entries. cvg's SIFT LightGlue reads RootSIFT descriptors with the keypoints'
#: scales and orientations (its ``add_scale_ori``); RootSIFT features already are RootSIFT.
INFOS = {
    "sift": _info("sift", 128, matcher="sift", matcher_descriptors=rootsift),
    "rootsift": _info("rootsift", 128, matcher="sift"),
    "orb": _info("orb", 32, binary=True),
}


class _OpenCVDetector(InfoFacts):
    """Shared plumbing; subclasses build the OpenCV object and post-process descriptors."""

    config_class: type
    min_size = 1  # smaller images yield no keypoints

    def __init__(self, config=None, **overrides) -> None:
        config = config or self.config_class()
        self.config = config.replace(**overrides) if overrides else config

    @property
    def device(self) -> torch.device:
        """OpenCV runs on the CPU."""
        return torch.device("cpu")

    @property
    def fingerprint(self) -> str:
        """A short hash of the class, the options and OpenCV's version."""
        options = {"config": self.config.to_dict(), "opencv": _cv2_version()}
        return fingerprint(type(self).__name__, options)

    @classmethod
    def from_pretrained(cls, source=None, **overrides):
        """The detector with ``overrides`` as options (there are no weights)."""
        return cls(cls.config_class(**overrides))

    @accepts_images
    def extract(self, images: Sequence[Prepared]) -> list[Features]:
        """Detect and describe prepared (8-bit grayscale) images, one at a time.

        Also takes one image or a list of images (see :func:`~.protocol.accepts_images`).
        """
        out = []
        for item in images:
            kpts, scores, desc, scales, oris = map(torch.from_numpy, self.detect_image(item.image))
            out.append(features_from_prepared(self, item, kpts, scores, desc, scales, oris))
        return out

    def _detector(self, conf):  # pragma: no cover - every detector overrides it
        """The OpenCV detector object for the options ``conf``."""
        raise NotImplementedError

    def _descriptors(self, desc: np.ndarray, conf) -> np.ndarray:  # pragma: no cover
        """OpenCV's descriptors post-processed (normalised, RootSIFT, uint8)."""
        raise NotImplementedError

    def detect_image(self, gray: np.ndarray, **options):
        """Detect and describe one 8-bit grayscale image, in numpy.

        ``gray`` (H, W) uint8 -> keypoints (N, 2) float32, scores (N,), descriptors (N, D), scales
        (N,) (OpenCV's ``KeyPoint.size``, pixels) and orientations (N,) (radians), numpy, the N best
        by OpenCV's response, in decreasing order.
        """
        conf = self.config.replace(**options) if options else self.config
        dim, dtype = self.descriptor_dim, np.uint8 if self.binary else np.float32
        too_small = min(gray.shape) < self.min_size  # OpenCV asserts on these
        points, desc = (
            ((), None) if too_small else self._detector(conf).detectAndCompute(gray, None)
        )
        if not points or desc is None:
            empty = np.zeros(0, np.float32)
            return np.zeros((0, 2), np.float32), empty, np.zeros((0, dim), dtype), empty, empty
        kpts = np.array([p.pt for p in points], np.float32)
        scores = np.array([p.response for p in points], np.float32)
        scales = np.array([p.size for p in points], np.float32)
        oris = np.deg2rad(np.array([p.angle for p in points], np.float32))
        order = np.argsort(-scores, kind="stable")
        if conf.max_keypoints > 0:
            order = order[: conf.max_keypoints]
        desc = self._descriptors(desc[order], conf)
        return kpts[order], scores[order], desc, scales[order], oris[order]


class SIFT(_OpenCVDetector):
    """OpenCV SIFT; float32 128-d descriptors, L2-normalised (RootSIFT when asked)."""

    config_class = SIFTConfig

    @property
    def info(self) -> DetectorInfo:
        """``rootsift`` or ``sift``, by the ``rootsift`` option."""
        return INFOS["rootsift" if self.config.rootsift else "sift"]

    def _detector(self, conf):
        import cv2

        n = conf.max_keypoints if conf.max_keypoints > 0 else 0
        return cv2.SIFT_create(nfeatures=n, contrastThreshold=conf.threshold)  # pyright: ignore[reportAttributeAccessIssue]

    def _descriptors(self, desc: np.ndarray, conf) -> np.ndarray:
        desc = desc.astype(np.float32)
        if conf.rootsift:
            desc = np.asarray(rootsift(desc))
        return desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)


class ORB(_OpenCVDetector):
    """OpenCV ORB; binary descriptors, uint8 (N, 32), compared with the Hamming distance."""

    config_class = ORBConfig
    min_size = 32  # the 31-pixel patch must fit (OpenCV's edgeThreshold)

    @property
    def info(self) -> DetectorInfo:
        """The registry entry (``orb``)."""
        return INFOS["orb"]

    def _detector(self, conf):
        import cv2

        fast = max(1, int(round(conf.threshold * 255)))
        return cv2.ORB_create(nfeatures=conf.max_keypoints, fastThreshold=fast)  # pyright: ignore[reportAttributeAccessIssue]

    def _descriptors(self, desc: np.ndarray, conf) -> np.ndarray:
        return desc.astype(np.uint8)
