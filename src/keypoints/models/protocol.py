"""What every detector is: the facts its registry entry holds, and the protocol it implements.

A detector file under ``models/`` declares one :class:`DetectorInfo` per released variant (name,
descriptor size, license, where the weights come from, which LightGlue weights fit its descriptors,
how images are preprocessed) and a class implementing :class:`Detector`; ``models/registry.py``
lists the infos. Everything downstream (detection, matching, the pipeline, the CLI) asks these two
and never branches on a model's name.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..defaults import DEFAULT_MAX_PIXELS, DEFAULT_RESIZE
from ..features import Features
from ..image import Prepared, as_image_list, prepare_array, scale_keypoints_back, to_array

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "Preprocessing",
    "DetectorInfo",
    "Detector",
    "fingerprint",
    "state_digest",
    "features_from_prepared",
    "accepts_images",
    "FINGERPRINT_LENGTH",
]

#: Hex digits of a fingerprint (48 bits: collisions between two settings are negligible).
FINGERPRINT_LENGTH = 12


@dataclass(frozen=True)
class Preprocessing:
    """How a detector wants its input (kept apart from its options, as LightGlue's ``resize``).

    Attributes:
        channels: 1 for NTSC grayscale, 3 for RGB.
        pad_multiple: the image is zero-padded at the right and bottom to a multiple of it (the
            valid size is passed along); 1 when the network pads itself.
        uint8: 8-bit grayscale input (OpenCV's detectors) instead of float32 in [0, 1].
    """

    channels: int = 1
    pad_multiple: int = 8
    uint8: bool = False

    def prepare(self, array: np.ndarray, resize: int | Sequence[int] | None) -> Prepared:
        """``(H, W, C)`` decoded image -> :class:`~keypoints.image.Prepared` for the network."""
        return prepare_array(array, resize, self.pad_multiple, self.channels, self.uint8)


@dataclass(frozen=True)
class DetectorInfo:
    """A registry entry: everything known about a named detector without loading it.

    Attributes:
        name: the registry name, also :attr:`keypoints.Features.model` of its features.
        kind: ``"learned"`` or ``"handcrafted"``.
        descriptor_dim: descriptor size D.
        license: the weights' license (the code is MIT).
        weights: where the weights come from, for people.
        load: builds the detector with its default options.
        available: True when it can be loaded now without a network.
        binary: binary descriptors (uint8, Hamming distance) instead of float ones.
        matcher_weights: the LightGlue release trained on these descriptors (a name
            :meth:`keypoints.models.lightglue.LightGlue.from_pretrained` takes), or None.
        matcher_descriptors: how descriptors are transformed before that matcher reads them
            (``(N, D)`` -> ``(N, D)``; SIFT's LightGlue was trained on RootSIFT), or None.
        preprocessing: what the detector's input looks like.
        rotation_invariant: its descriptors survive any in-plane rotation (SIFT and ORB assign
            orientations), so ``rotation="auto"`` has nothing to search for. (ALIKED-n16rot is
            not: trained with moderate rotations, it matches a 90-degree turn of the example
            image with 6 inliers.)
    """

    name: str
    kind: str
    descriptor_dim: int
    license: str
    weights: str
    load: Callable[[], Detector]
    available: Callable[[], bool]
    binary: bool = False
    matcher_weights: str | None = None
    matcher_descriptors: Callable[[torch.Tensor], torch.Tensor] | None = None
    preprocessing: Preprocessing = Preprocessing()
    rotation_invariant: bool = False

    @property
    def offline(self) -> bool:
        """True when the weights are available without a download (bundled or cached)."""
        return self.available()

    def as_dict(self) -> dict[str, Any]:
        """The entry's facts as a dict, for listings.

        ``name``, ``kind``, ``descriptor_dim``, ``binary``, ``license``, ``weights``,
        ``matcher_weights`` and ``offline`` (usable now without a network).
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "descriptor_dim": self.descriptor_dim,
            "binary": self.binary,
            "license": self.license,
            "weights": self.weights,
            "matcher_weights": self.matcher_weights,
            "offline": self.offline,
        }


@runtime_checkable
class Detector(Protocol):
    """The protocol every detector implements (learned networks and OpenCV's alike).

    ``info`` is the detector's registry entry; ``name``, ``descriptor_dim``, ``binary``,
    ``license``, ``matcher_weights``, ``offline`` and ``preprocessing`` are its facts. ``config``
    holds the options (merged once, validated when set). ``fingerprint`` identifies the
    weights and options, so that results of other weights are never mixed with these.
    """

    config: Any

    @property
    def info(self) -> DetectorInfo:
        """The detector's registry entry."""
        ...

    @property
    def name(self) -> str:
        """The registry name, also ``Features.model``."""
        ...

    @property
    def descriptor_dim(self) -> int:
        """Descriptor size D."""
        ...

    @property
    def binary(self) -> bool:
        """True for binary (uint8, Hamming) descriptors."""
        ...

    @property
    def license(self) -> str:
        """The weights' license."""
        ...

    @property
    def matcher_weights(self) -> str | None:
        """The LightGlue release trained on these descriptors, or None."""
        ...

    @property
    def offline(self) -> bool:
        """True when the detector can run without a network."""
        ...

    @property
    def preprocessing(self) -> Preprocessing:
        """What the detector's input looks like."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the detector runs."""
        ...

    @property
    def fingerprint(self) -> str:
        """A short hash identifying the weights and options."""
        ...

    def prepare(self, array: np.ndarray, resize: int | Sequence[int] | None) -> Prepared:
        """A decoded ``(H, W, C)`` image -> the detector's input (pure numpy, thread-safe)."""
        ...

    def extract(self, images, resize: int | Sequence[int] | None = DEFAULT_RESIZE) -> Any:
        """Detect and describe prepared images, or one image as LightGlue's ``extract`` takes.

        A sequence of :class:`~keypoints.image.Prepared` gives one :class:`Features` per image,
        in order; one image (see :func:`accepts_images`) gives its :class:`Features`.
        Keypoints are in original-image pixels.
        """
        ...


def accepts_images(
    extract: Callable[[Any, Sequence[Prepared]], list[Features]],
) -> Callable[..., Any]:
    """Let a detector's batch ``extract(prepared_list)`` also take images, as LightGlue's does.

    The wrapped method takes:

    - a sequence of :class:`~keypoints.image.Prepared` (from :meth:`Detector.prepare`): one
      :class:`Features` per item, in order (the batch form the pipeline uses);
    - one image: a path, a PIL image, a numpy ``(H, W[, C])`` RGB array or a torch ``(C, H, W)``
      tensor in [0, 1] (LightGlue's ``extractor.extract(image)``): its :class:`Features`;
    - a list of images or a ``(B, C, H, W)`` tensor: one :class:`Features` per image.

    Images are decoded with :func:`keypoints.image.to_array` and resized by ``resize`` (the
    longest side, default 1024, never upsampled; ``(height, width)``; None: native). Keypoints
    are float32 (x, y) in original-image pixels, centres at integers.
    """

    @functools.wraps(extract)
    def wrapper(self, images, resize: int | Sequence[int] | None = DEFAULT_RESIZE) -> Any:
        if isinstance(images, Prepared):
            return extract(self, [images])[0]
        if isinstance(images, (list, tuple)) and all(isinstance(i, Prepared) for i in images):
            return extract(self, images)  # the batch form (also an empty list)
        single = not isinstance(images, (list, tuple)) and not (
            isinstance(images, torch.Tensor) and images.ndim == 4
        )
        prepared = [
            self.prepare(to_array(image, max_pixels=DEFAULT_MAX_PIXELS), resize)
            for image in as_image_list(images)
        ]
        results = extract(self, prepared)
        return results[0] if single else results

    return wrapper


class InfoFacts:
    """The :class:`Detector` facts read from ``self.info`` (a mixin for detector classes)."""

    @property
    def info(self) -> DetectorInfo:  # pragma: no cover - every detector overrides it
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The registry name, also ``Features.model``."""
        return self.info.name

    @property
    def descriptor_dim(self) -> int:
        """Descriptor size D."""
        return self.info.descriptor_dim

    @property
    def binary(self) -> bool:
        """Binary (uint8, Hamming) descriptors."""
        return self.info.binary

    @property
    def license(self) -> str:
        """The weights' license."""
        return self.info.license

    @property
    def matcher_weights(self) -> str | None:
        """The LightGlue release trained on these descriptors, or None."""
        return self.info.matcher_weights

    @property
    def offline(self) -> bool:
        """A loaded detector needs no network."""
        return True

    @property
    def preprocessing(self) -> Preprocessing:
        """What the detector's input looks like."""
        return self.info.preprocessing

    def prepare(self, array: np.ndarray, resize: int | Sequence[int] | None) -> Prepared:
        """A decoded ``(H, W, C)`` image -> this detector's input.

        The image comes from :func:`keypoints.image.to_array`; it is resized by ``resize`` (see
        :func:`keypoints.image.resized_shape`).
        """
        return self.preprocessing.prepare(array, resize)


def fingerprint(kind: str, options: dict[str, Any], weights: str = "") -> str:
    """A short hex hash of a detector's class, options and weights.

    The hash covers the detector's class ``kind``, its ``options`` (a JSON-able dict) and the digest
    of its ``weights``: :data:`FINGERPRINT_LENGTH` hex digits.
    """
    text = json.dumps({"kind": kind, "options": options, "weights": weights}, sort_keys=True,
                      default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def state_digest(module: nn.Module) -> str:
    """sha256 of a module's state dict (names and values).

    Cached on the module until a tensor changes: the cache key holds each tensor's storage
    address and version counter, which in-place updates (``load_state_dict``, ``mul_``) bump;
    shallow copies sharing the weights share the entry.
    """
    tensors = itertools.chain(module.parameters(), module.buffers())
    key = tuple((t.data_ptr(), t._version, t.dtype, t.shape) for t in tensors)
    cached = module.__dict__.get("_state_digest")
    if cached is not None and cached[0] == key:
        return cached[1]
    state = module.state_dict()
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    value = digest.hexdigest()
    module.__dict__["_state_digest"] = (key, value)
    return value


def features_from_prepared(
    detector: Detector,
    item: Prepared,
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    descriptors: torch.Tensor,
    scales: torch.Tensor | None = None,
    orientations: torch.Tensor | None = None,
    fingerprint: str | None = None,
) -> Features:
    """:class:`Features` of one prepared image, in original-image pixels.

    ``keypoints (N, 2)`` (x, y) in pixels of the prepared image are mapped back to the original
    image (scales too), and the detector's name and fingerprint are recorded.
    """
    height, width = item.original
    if scales is not None:  # sizes in original-image pixels, as the keypoints
        factor = ((item.original[0] / item.size[0]) * (item.original[1] / item.size[1])) ** 0.5
        scales = scales * factor
    return Features(
        keypoints=scale_keypoints_back(keypoints, item.size, (height, width)).to(torch.float32),
        scores=scores,
        descriptors=descriptors,
        image_size=(width, height),
        model=detector.name,
        binary=detector.binary,
        scales=scales,
        orientations=orientations,
        fingerprint=fingerprint or detector.fingerprint,
    )
