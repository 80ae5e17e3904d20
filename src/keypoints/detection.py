"""``detect``: images in, :class:`~keypoints.Features` out, in original-image coordinates."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

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
from .models.registry import load_model

__all__ = ["detect", "prepare_image"]


def prepare_image(
    array: np.ndarray, resize: int | Sequence[int] | None, multiple: int = 8
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(H, W, C)`` array from :func:`keypoints.image.to_array` -> grayscale float32 image
    resized by ``resize`` (see :func:`keypoints.image.resized_shape`) and zero-padded at the
    right and bottom to a multiple of ``multiple`` (at least one cell).

    Returns the padded ``(H', W')`` image and the ``(height, width)`` of its valid region.
    """
    gray = rgb_to_grayscale(to_float(array))[..., None]
    size = resized_shape(gray.shape[0], gray.shape[1], resize)
    gray = resize_array(gray, size)[..., 0]
    padded_h = max(multiple, -(-size[0] // multiple) * multiple)
    padded_w = max(multiple, -(-size[1] // multiple) * multiple)
    if (padded_h, padded_w) != size:
        gray = np.pad(gray, ((0, padded_h - size[0]), (0, padded_w - size[1])))
    return np.ascontiguousarray(gray, dtype=np.float32), size


def detect(
    images,
    model: str | os.PathLike | nn.Module = "superpoint",
    *,
    resize: int | Sequence[int] | None = 1024,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **options,
) -> list[Features]:
    """Detect and describe keypoints.

    Args:
        images: one image or a list: paths, PIL images, numpy ``(H, W[, 3|4])`` arrays (uint8,
            uint16 or float in [0, 1]) or torch ``(C, H, W)`` tensors.
        model: a name (``"superpoint"``), a checkpoint path or Hub id, or a loaded model.
            Loaded models are cached per process.
        resize: preprocessing, kept apart from the model options. An int is the longest side
            (default 1024; never upsamples, as LightGlue), ``(height, width)`` an exact size,
            None the native resolution (padded to a multiple of 8).
        device: where to run (default: the model's device).
        batch_size: images decoded at a time (bounds memory); those of equal processed size
            share a forward pass. Images are never padded to another's size, so each gets the
            same keypoints as when run alone.
        max_pixels: refuse larger images (Pillow's decompression-bomb limit by default).
        **options: model options: ``max_keypoints`` (-1: all), ``threshold``, ``nms_radius``,
            ``border``; None means the model's default; unknown names raise
            :class:`~keypoints.errors.ConfigError`.

    Returns:
        One :class:`Features` per image: ``keypoints (N, 2)`` float32 (x, y) in original-image
        pixels with pixel centres at integers, ``scores (N,)``, ``descriptors (N, D)``.
    """
    options = {k: v for k, v in options.items() if v is not None}
    net = load_model(model, device)
    if options:
        net.config.replace(**options)  # validate once, before any work
    cell = getattr(net.config, "cell_size", 8)
    name = getattr(net, "name", type(net).__name__.lower())
    items = as_image_list(images)
    results: list[Features] = []
    # Work through the input in chunks so memory stays bounded; inside a chunk, images of the
    # same processed size share a forward pass.
    for start in range(0, len(items), batch_size):
        arrays = [to_array(x, max_pixels=max_pixels) for x in items[start : start + batch_size]]
        prepared = [prepare_image(a, resize, cell) for a in arrays]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (gray, _) in enumerate(prepared):
            groups[gray.shape].append(i)
        chunk: list[Features | None] = [None] * len(arrays)
        for indices in groups.values():
            batch = torch.from_numpy(np.stack([prepared[i][0] for i in indices]))[:, None]
            sizes = torch.tensor([prepared[i][1] for i in indices], device=net.device)
            with torch.inference_mode():
                out = net.extract(batch.to(device=net.device, dtype=net.dtype), sizes, **options)
            counts = out["mask"].sum(1).tolist()
            for j, i in enumerate(indices):
                n, (height, width) = counts[j], arrays[i].shape[:2]
                kpts = out["keypoints"][j, :n].float().cpu()
                chunk[i] = Features(
                    keypoints=scale_keypoints_back(kpts, prepared[i][1], (height, width)),
                    scores=out["scores"][j, :n].float().cpu(),
                    descriptors=out["descriptors"][j, :n].float().cpu(),
                    image_size=(width, height),
                    model=name,
                )
        results.extend(chunk)  # type: ignore[arg-type]
    return results
