"""``detect``: images in, :class:`~keypoints.Features` out, in original-image coordinates."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

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

__all__ = ["detect", "prepare", "prepare_image", "run_prepared", "Prepared"]


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
        chunk = items[start : start + batch_size]
        prepared = [prepare(net, to_array(x, max_pixels=max_pixels), resize) for x in chunk]
        results.extend(run_prepared(net, prepared, options))
    return results


@dataclass(frozen=True)
class Prepared:
    """An image ready for a model: ``image`` float32 (grayscale ``(H', W')``, RGB
    ``(H', W', 3)``; uint8 for OpenCV models) resized and padded as the model needs, ``size`` =
    (height, width) of its valid region, ``original`` = (height, width) of the decoded image."""

    image: np.ndarray
    size: tuple[int, int]
    original: tuple[int, int]


def prepare(net, array: np.ndarray, resize: int | Sequence[int] | None) -> Prepared:
    """The model-specific preprocessing of a decoded ``(H, W, C)`` array (from
    :func:`keypoints.image.to_array`); pure numpy, safe to run in worker threads."""
    original = (int(array.shape[0]), int(array.shape[1]))
    if isinstance(net, KeypointModel):
        image, size = prepare_image(array, resize, net.pad_multiple, net.input_channels)
        return Prepared(image, size, original)
    # OpenCV detectors see the 8-bit grayscale image
    gray, size = prepare_image(array, resize, multiple=1, channels=1)
    return Prepared(np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8), size, original)


def run_prepared(net, prepared: Sequence[Prepared], options: dict) -> list[Features]:
    """Detect on prepared images (see :func:`prepare`), in input order. For learned models,
    images of equal prepared size share a forward pass."""
    if not isinstance(net, KeypointModel):
        return [_detect_opencv(net, p, options) for p in prepared]
    return _detect_torch(net, prepared, options)


def _features(net, keypoints, scores, descriptors, item: Prepared, model=None, **extra):
    height, width = item.original
    return Features(
        keypoints=scale_keypoints_back(keypoints, item.size, (height, width)).to(torch.float32),
        scores=scores,
        descriptors=descriptors,
        image_size=(width, height),
        model=model or getattr(net, "name", type(net).__name__.lower()),
        binary=bool(getattr(net, "binary", False)),
        **extra,
    )


def _detect_torch(net, prepared: Sequence[Prepared], options) -> list[Features]:
    """Images of equal prepared size share a forward pass."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, item in enumerate(prepared):
        groups[item.image.shape].append(i)
    out_list: list[Features | None] = [None] * len(prepared)
    for indices in groups.values():
        batch = torch.from_numpy(np.stack([prepared[i].image for i in indices]))
        batch = batch[:, None] if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
        sizes = torch.tensor([prepared[i].size for i in indices], device=net.device)
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
                prepared[i],
            )
    return out_list  # type: ignore[return-value]


def _detect_opencv(net, item: Prepared, options) -> Features:
    kpts, scores, desc, scales, oris = map(
        torch.from_numpy, net.detect_image(item.image, **options)
    )
    # sizes in original-image pixels, as the keypoints
    factor = ((item.original[0] / item.size[0]) * (item.original[1] / item.size[1])) ** 0.5
    return _features(net, kpts, scores, desc, item, model=net.feature_name(**options),
                     scales=scales * factor, orientations=oris)  # fmt: skip
