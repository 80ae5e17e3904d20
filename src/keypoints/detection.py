"""``detect``: images in, :class:`~keypoints.Features` out, in original-image coordinates.

The data path is the same for every detector: decode (:func:`keypoints.image.to_array`) ->
the detector's ``prepare`` (grayscale or RGB, resize, pad) -> its ``extract`` (network, NMS,
top-k, descriptors) -> :class:`~keypoints.Features`.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .defaults import (
    DEFAULT_BACKEND,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_RESIZE,
)
from .errors import ConfigError
from .features import Features
from .image import ResizeInput, as_image_list, check_resize, to_array
from .models.protocol import Detector
from .models.registry import load_model

__all__ = ["detect"]


def detect(
    images,
    model: str | os.PathLike | Detector = DEFAULT_MODEL,
    *,
    resize: ResizeInput = DEFAULT_RESIZE,
    device: str | torch.device | None = DEFAULT_DEVICE,
    backend: str = DEFAULT_BACKEND,
    precision: str = DEFAULT_PRECISION,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    channels: str = "rgb",
    **options,
) -> list[Features]:
    """Detect and describe keypoints.

    Args:
        images: one image or a list: paths, PIL images, numpy ``(H, W[, 3|4])`` arrays (uint8,
            uint16 or float in [0, 1]) or torch ``(C, H, W)`` tensors.
        model: a name from :func:`keypoints.list_models` (default ``"aliked-n16rot"``, bundled,
            works offline), a checkpoint path or Hub id, or a loaded detector. Loaded models
            are cached per process.
        resize: preprocessing, kept apart from the model options. An int is the longest side
            (default 1024; smaller images are never upsampled, whereas cvg's LightGlue
            ``Extractor`` scales every image to ``resize``); None the native resolution; an
            exact size as ``(height, width)`` (torch's order; a tuple that flips the image's
            orientation warns), ``keypoints.Size(height=, width=)``, ``{"height": H, "width":
            W}`` or ``"WIDTHxHEIGHT"`` (the CLI's ``--resize 640x480``). See
            :func:`keypoints.image.normalize_resize`. (``Features.image_size`` is ``(width,
            height)``, as LightGlue's.)
        device: where to run: ``"auto"`` (default; CUDA when a GPU is visible, else the
            CPU; a detector passed in stays on its device), ``"cpu"``, ``"cuda"``, a
            :class:`torch.device`, or None (the CPU; a detector passed in stays put).
        backend: for a model given by name or path, run its dense network with ``"torch"``,
            ``"onnxruntime"`` or ``"auto"`` (onnxruntime when installed, same numbers to about
            1e-6).
        precision: ``"fp32"`` (parity), ``"bf16"``, ``"int8"`` (models with an onnxruntime
            graph: SuperPoint) or ``"fast"`` (each model's fastest measured precision); see
            the documentation's Speed page for the measured accuracy cost. For a model given by
            name or path.
        batch_size: images decoded at a time (bounds memory); those of equal processed size
            share a forward pass. Images are never padded to another's size, so each gets the
            same keypoints as when run alone.
        max_pixels: refuse larger images (Pillow's decompression-bomb limit by default).
        channels: the channel order of numpy arrays: ``"rgb"`` (default; Pillow, matplotlib,
            imageio, transformers) or ``"bgr"`` (OpenCV's ``cv2.imread``: **pass
            channels="bgr" for its arrays**, or they are read as RGB with red and blue
            swapped). Files and PIL images are always decoded as RGB.
        **options: model options, the same names for every model: ``max_keypoints`` (-1:
            all), ``threshold``, ``nms_radius`` (learned models); None means the model's
            default; unknown names raise :class:`~keypoints.errors.ConfigError`. They are
            merged into the detector's config once, before any image is read.

    Returns:
        One :class:`Features` per image: ``keypoints (N, 2)`` float32 (x, y) in original-image
        pixels with pixel centres at integers, ``scores (N,)``, ``descriptors (N, D)``, the
        detector's ``model`` name and ``fingerprint``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    check_resize(resize, max_pixels)
    if channels not in ("rgb", "bgr"):
        raise ConfigError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
    options = {k: v for k, v in options.items() if v is not None}
    net = load_model(model, device, backend, precision, **options)
    items = as_image_list(images)
    results: list[Features] = []
    # Work through the input in chunks so memory stays bounded.
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        if channels == "bgr":
            chunk = [_bgr_to_rgb(x) for x in chunk]
        prepared = [net.prepare(to_array(x, max_pixels=max_pixels), resize) for x in chunk]
        results.extend(net.extract(prepared))
    return results


def _bgr_to_rgb(image):
    """A BGR(A) numpy array as RGB(A); anything else as it is."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        order = [2, 1, 0, 3][: image.shape[2]]
        return image[..., order]
    return image
