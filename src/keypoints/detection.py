"""``detect``: images in, :class:`~keypoints.Features` out, in original-image coordinates."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from .features import Features
from .image import (
    DEFAULT_MAX_PIXELS,
    as_image_list,
    resize_array,
    resized_shape,
    rgb_to_grayscale,
    scale_keypoints_back,
    to_array,
    to_float,
)
from .models.base import KeypointModel
from .models.registry import DEFAULT_MODEL, load_model

__all__ = ["detect", "prepare_image"]


def prepare_image(
    array: np.ndarray,
    resize: int | Sequence[int] | None,
    multiple: int = 8,
    channels: int = 1,
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(H, W, C)`` array from :func:`keypoints.image.to_array` -> float32 image in [0, 1],
    grayscale ``(H', W')`` (``channels=1``, NTSC weights) or RGB ``(H', W', 3)``
    (``channels=3``; gray sources are repeated), resized by ``resize`` (see
    :func:`keypoints.image.resized_shape`) and zero-padded at the right and bottom to a
    multiple of ``multiple`` (at least one multiple).

    Returns the padded image and the ``(height, width)`` of its valid region.
    """
    image = to_float(array)
    if channels == 1:
        image = rgb_to_grayscale(image)[..., None]
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    size = resized_shape(image.shape[0], image.shape[1], resize)
    image = resize_array(image, size)
    padded_h = max(multiple, -(-size[0] // multiple) * multiple)
    padded_w = max(multiple, -(-size[1] // multiple) * multiple)
    if (padded_h, padded_w) != size:
        image = np.pad(image, ((0, padded_h - size[0]), (0, padded_w - size[1]), (0, 0)))
    image = image[..., 0] if channels == 1 else image
    return np.ascontiguousarray(image, dtype=np.float32), size


def detect(
    images,
    model: str | os.PathLike | object = DEFAULT_MODEL,
    *,
    resize: int | Sequence[int] | None = 1024,
    device: str | torch.device | None = None,
    backend: str = "auto",
    precision: str = "fp32",
    batch_size: int = 8,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **options,
) -> list[Features]:
    """Detect and describe keypoints.

    Args:
        images: one image or a list: paths, PIL images, numpy ``(H, W[, 3|4])`` arrays (uint8,
            uint16 or float in [0, 1]) or torch ``(C, H, W)`` tensors.
        model: a name from :func:`keypoints.list_models` (default ``"aliked-n16"``, bundled,
            works offline), a checkpoint path or Hub id, or a loaded model. Loaded models are
            cached per process.
        resize: preprocessing, kept apart from the model options. An int is the longest side
            (default 1024; never upsamples, as LightGlue), ``(height, width)`` an exact size,
            None the native resolution.
        device: where to run (default: the model's device).
        backend: for a model given by name or path, run its dense network with ``"torch"``,
            ``"onnxruntime"`` or ``"auto"`` (onnxruntime when installed, same numbers to about
            1e-6). precision: ``"fp32"`` or ``"bf16"`` (fast mode; see the README for its
            measured accuracy cost), for a model given by name or path.
        batch_size: images decoded at a time (bounds memory); those of equal processed size
            share a forward pass. Images are never padded to another's size, so each gets the
            same keypoints as when run alone.
        max_pixels: refuse larger images (Pillow's decompression-bomb limit by default).
        **options: model options, the same names for every model: ``max_keypoints`` (-1:
            all), ``threshold``, ``nms_radius`` (learned models); None means the model's
            default; unknown names raise :class:`~keypoints.errors.ConfigError`.

    Returns:
        One :class:`Features` per image: ``keypoints (N, 2)`` float32 (x, y) in original-image
        pixels with pixel centres at integers, ``scores (N,)``, ``descriptors (N, D)``.
    """
    options = {k: v for k, v in options.items() if v is not None}
    net = load_model(model, device, backend, precision)
    if options:
        net.config.replace(**options)  # validate once, before any work
    items = as_image_list(images)
    results: list[Features] = []
    # Work through the input in chunks so memory stays bounded.
    for start in range(0, len(items), batch_size):
        arrays = [to_array(x, max_pixels=max_pixels) for x in items[start : start + batch_size]]
        if isinstance(net, KeypointModel):
            results.extend(_detect_torch(net, arrays, resize, options))
        else:
            results.extend(_detect_opencv(net, a, resize, options) for a in arrays)
    return results


def _features(net, keypoints, scores, descriptors, array, size) -> Features:
    height, width = array.shape[:2]
    return Features(
        keypoints=scale_keypoints_back(keypoints, size, (height, width)).to(torch.float32),
        scores=scores,
        descriptors=descriptors,
        image_size=(width, height),
        model=getattr(net, "name", type(net).__name__.lower()),
        binary=bool(getattr(net, "binary", False)),
    )


def _detect_torch(net, arrays, resize, options) -> list[Features]:
    """Images of equal processed size share a forward pass."""
    prepared = [prepare_image(a, resize, net.pad_multiple, net.input_channels) for a in arrays]
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (image, _) in enumerate(prepared):
        groups[image.shape].append(i)
    out_list: list[Features | None] = [None] * len(arrays)
    for indices in groups.values():
        batch = torch.from_numpy(np.stack([prepared[i][0] for i in indices]))
        batch = batch[:, None] if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
        sizes = torch.tensor([prepared[i][1] for i in indices], device=net.device)
        with torch.inference_mode():
            out = net.extract(batch.to(device=net.device, dtype=net.dtype), sizes, **options)
        counts = out["mask"].sum(1).tolist()
        for j, i in enumerate(indices):
            n = counts[j]
            out_list[i] = _features(
                net,
                out["keypoints"][j, :n].float().cpu(),
                out["scores"][j, :n].float().cpu(),
                out["descriptors"][j, :n].float().cpu(),
                arrays[i],
                prepared[i][1],
            )
    return out_list  # type: ignore[return-value]


def _detect_opencv(net, array, resize, options) -> Features:
    """OpenCV detectors see the 8-bit grayscale image."""
    gray, size = prepare_image(array, resize, multiple=1, channels=1)
    gray8 = np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8)
    kpts, scores, desc = net.detect_image(gray8, **options)
    return _features(
        net, torch.from_numpy(kpts), torch.from_numpy(scores), torch.from_numpy(desc), array, size
    )
