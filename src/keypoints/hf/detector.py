"""transformers' keypoint-detection contract for every learned detector of the registry.

``AutoModel.from_pretrained("aliked-n16")`` and ``AutoImageProcessor.from_pretrained("aliked-n16")``
give the same three steps as the transformers guide does for SuperPoint (processor ->
``model(**inputs)`` -> ``processor.post_process_keypoint_detection``), over the core detector of
:mod:`keypoints.models` (sharing its weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError, ImageError, closest
from ..models.base import KeypointModel
from ..models.registry import MODELS, load_model
from .common import Facade
from .superpoint import (
    SuperPointForKeypointDetection,
    SuperPointImageProcessor,
    SuperPointKeypointDescriptionOutput,
)

__all__ = ["KeypointDetectionModel", "detector_for_name", "processor_for_name", "is_model_name"]


def is_model_name(source) -> bool:
    """True when ``source`` is a name of the registry (``"aliked-n16"``, ``"disk"``, ...)."""
    return isinstance(source, str) and source in MODELS


def _learned(name: str, **options) -> KeypointModel:
    net = load_model(name, **options)
    if not isinstance(net, KeypointModel):
        learned = [n for n, info in MODELS.items() if info.kind == "learned"]
        raise ConfigError(
            f"'{name}' is an OpenCV detector, not a network: use keypoints.detect(image, "
            f"model='{name}') (the transformers classes take one of {', '.join(learned)})"
        )
    return net


def detector_for_name(name: str, **options):
    """The transformers-style model of the registered detector ``name``.

    ``options`` are detector options (``max_keypoints``, ``threshold``, ...) and ``device``,
    ``backend``, ``precision`` as :func:`keypoints.load_model` takes them. SuperPoint gives
    :class:`~keypoints.hf.SuperPointForKeypointDetection`, the others
    :class:`KeypointDetectionModel`.
    """
    if not is_model_name(name):
        raise ConfigError(f"unknown model '{name}'{closest(name, MODELS)}")
    net = _learned(name, **options)
    if name == "superpoint":
        return SuperPointForKeypointDetection.from_core(net)  # type: ignore[arg-type]
    return KeypointDetectionModel(net)


def processor_for_name(name: str, **kwargs) -> SuperPointImageProcessor:
    """The image processor of the registered detector ``name``.

    transformers' SuperPoint processor (resize to 480x640 by default, rescale to [0, 1]), with
    NTSC grayscale for detectors that read one channel (SuperPoint) and RGB for the others
    (ALIKED, DISK, XFeat). ``kwargs`` override its options (``size``, ``do_resize``, ...).
    """
    if not is_model_name(name):
        raise ConfigError(f"unknown model '{name}'{closest(name, MODELS)}")
    grayscale = MODELS[name].preprocessing.channels == 1
    return SuperPointImageProcessor(**{"do_grayscale": grayscale, **kwargs})


class KeypointDetectionModel(Facade):
    """A registered learned detector with transformers' ``forward(pixel_values)``.

    ``pixel_values (B, C, H, W)`` float in [0, 1] (from :func:`processor_for_name`; the first
    channel is read by grayscale detectors). Returns
    :class:`~keypoints.hf.SuperPointKeypointDescriptionOutput`: ``keypoints (B, N, 2)`` relative
    (x, y) (pixels divided by (W, H), as transformers' SuperPoint), ``scores (B, N)``,
    ``descriptors (B, N, D)``, ``mask (B, N)`` int32. Options live in ``model.config`` (the
    core detector's).
    """

    core: KeypointModel

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> SuperPointKeypointDescriptionOutput:
        """Transformers' forward; see the class docstring."""
        if kwargs:
            raise ConfigError(f"unexpected model input '{next(iter(kwargs))}'; pass pixel_values")
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = getattr(pixel_values, "shape", None)
            raise ImageError(f"pixel_values must be a (B, C, H, W) tensor, got {shape}")
        # 1. the channels the detector reads, padded to its stride (the valid size passed on)
        core = self.core
        image = pixel_values[:, :1] if core.input_channels == 1 else pixel_values[:, :3]
        if image.shape[1] != core.input_channels:
            raise ImageError(f"{core.name} needs RGB pixel_values, got {image.shape[1]} channel")
        batch, _, height, width = image.shape
        multiple = core.preprocessing.pad_multiple
        pad = (-width % multiple, -height % multiple)
        image = F.pad(image, (0, pad[0], 0, pad[1]))
        sizes = torch.tensor([[height, width]], device=image.device).expand(batch, 2)
        # 2. the core's keypoints, in pixels of pixel_values
        with torch.inference_mode():
            out = core(image.to(device=core.device, dtype=core.dtype), sizes)
        # 3. relative coordinates, as transformers' SuperPoint returns them
        scale = torch.tensor([width, height], device=out["keypoints"].device)
        return SuperPointKeypointDescriptionOutput(
            keypoints=out["keypoints"] / scale,
            scores=out["scores"],
            descriptors=out["descriptors"],
            mask=out["mask"].to(torch.int32),
        )
