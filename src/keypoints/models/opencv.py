"""OpenCV's SIFT (Lowe 2004) and ORB (Rublee et al. 2011) behind the same interface as the
learned models: ``detect_image(gray uint8 (H, W))`` -> keypoints (N, 2) float32 (x, y),
scores (N,), descriptors (N, D), scales (N,) and orientations (N,). OpenCV's pixel convention
(centres at integers) is ours.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .config import check_max_keypoints, check_unit, config_class

__all__ = ["SIFTConfig", "ORBConfig", "SIFT", "ORB", "rootsift"]


def rootsift(descriptors):
    """RootSIFT (Arandjelovic & Zisserman 2012) of non-negative SIFT descriptors ``(N, 128)``
    (numpy or torch, raw or L2-normalised: the L1 normalisation removes either scale): L1
    normalise, square root, so the dot product is the Hellinger kernel; rows have unit L2 norm.
    """
    if isinstance(descriptors, torch.Tensor):
        return (descriptors / descriptors.sum(1, keepdim=True).clamp(min=1e-12)).sqrt()
    return np.sqrt(descriptors / np.maximum(descriptors.sum(1, keepdims=True), 1e-12))


@config_class
class SIFTConfig:
    """``max_keypoints`` (-1: all; else the best by response), ``threshold`` (OpenCV's
    contrastThreshold, 0.04), ``rootsift`` (RootSIFT, Arandjelovic & Zisserman 2012)."""

    max_keypoints: int = -1
    threshold: float = 0.04
    rootsift: bool = False

    def validate(self) -> None:
        check_max_keypoints(self.max_keypoints)
        check_unit("threshold", self.threshold)


@config_class
class ORBConfig:
    """``max_keypoints`` (OpenCV's nfeatures, default 2048), ``threshold`` (the FAST threshold
    as a fraction of 255, default 20/255 as OpenCV)."""

    max_keypoints: int = 2048
    threshold: float = 20 / 255

    def validate(self) -> None:
        check_max_keypoints(self.max_keypoints, allow_all=False)
        check_unit("threshold", self.threshold)


class _OpenCVDetector:
    """Shared plumbing; subclasses build the OpenCV object and post-process descriptors."""

    name = "opencv"
    binary = False
    input_channels = 1
    config_class: type
    device = torch.device("cpu")
    dtype = torch.float32
    min_size = 1  # smaller images yield no keypoints

    def __init__(self, config=None, **overrides) -> None:
        config = config or self.config_class()
        self.config = config.replace(**overrides) if overrides else config

    def eval(self):
        return self

    def to(self, device):
        if torch.device(device).type != "cpu":
            raise ConfigError(f"{self.name} runs on the CPU only; use --device cpu")
        return self

    @classmethod
    def from_pretrained(cls, source=None, **overrides):
        return cls(cls.config_class(**overrides))

    def feature_name(self, **options) -> str:
        """The name of the features detected with ``options`` (``Features.model``)."""
        return self.name

    def detect_image(self, gray: np.ndarray, **options):
        """``gray`` (H, W) uint8 -> keypoints (N, 2) float32, scores (N,), descriptors (N, D),
        scales (N,) (OpenCV's ``KeyPoint.size``, pixels) and orientations (N,) (radians), numpy,
        the N best by OpenCV's response, in decreasing order."""
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

    name = "sift"
    config_class = SIFTConfig
    descriptor_dim = 128

    def _detector(self, conf):
        import cv2

        n = conf.max_keypoints if conf.max_keypoints > 0 else 0
        return cv2.SIFT_create(nfeatures=n, contrastThreshold=conf.threshold)

    def feature_name(self, **options) -> str:
        conf = self.config.replace(**options) if options else self.config
        return "rootsift" if conf.rootsift else "sift"

    def _descriptors(self, desc: np.ndarray, conf) -> np.ndarray:
        desc = desc.astype(np.float32)
        if conf.rootsift:
            desc = rootsift(desc)
        return desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)


class ORB(_OpenCVDetector):
    """OpenCV ORB; binary descriptors, uint8 (N, 32), compared with the Hamming distance."""

    name = "orb"
    config_class = ORBConfig
    descriptor_dim = 32
    binary = True
    min_size = 32  # the 31-pixel patch must fit (OpenCV's edgeThreshold)

    def _detector(self, conf):
        import cv2

        fast = max(1, int(round(conf.threshold * 255)))
        return cv2.ORB_create(nfeatures=conf.max_keypoints, fastThreshold=fast)

    def _descriptors(self, desc: np.ndarray, conf) -> np.ndarray:
        return desc.astype(np.uint8)
