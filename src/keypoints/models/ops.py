"""Shared pure tensor functions for keypoint models: NMS, keypoint selection, descriptor sampling.

All functions are batched and contain no per-image or per-keypoint Python loops. Keypoints are
(x, y) pixel coordinates, pixel centres at integers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "concat_padded",
    "cells_to_heatmap",
    "max_pool",
    "simple_nms",
    "select_keypoints",
    "sample_descriptors",
    "sample_map",
    "soft_argmax_refine",
    "deform_conv2d",
]


def cells_to_heatmap(logits: torch.Tensor, cell: int) -> torch.Tensor:
    """SuperPoint's detector logits -> per-pixel keypoint probabilities.

    ``(B, cell*cell + 1, h, w)`` -> ``(B, h*cell, w*cell)`` probabilities: softmax over each cell's
    pixels and the dustbin, dustbin dropped.
    """
    prob = F.softmax(logits, 1)[:, :-1]
    b, _, h, w = prob.shape
    prob = prob.permute(0, 2, 3, 1).reshape(b, h, w, cell, cell)
    return prob.permute(0, 1, 3, 2, 4).reshape(b, h * cell, w * cell)


def max_pool(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over a ``(2r+1) x (2r+1)`` window, stride 1, same size out; ``x`` is ``(B, H, W)``.

    Computed separably (a ``1 x k`` then a ``k x 1`` pool): the max of maxima is the max, so the
    result is bit-identical to one ``k x k`` pool, at a fraction of the cost.
    """
    k = 2 * radius + 1
    x = x[:, None]
    x = F.max_pool2d(x, kernel_size=(1, k), stride=1, padding=(0, radius))
    x = F.max_pool2d(x, kernel_size=(k, 1), stride=1, padding=(radius, 0))
    return x[:, 0]


def simple_nms(scores: torch.Tensor, nms_radius: int) -> torch.Tensor:
    """Non-maximum suppression of a ``(B, H, W)`` score map; suppressed pixels become 0.

    The same two-pass algorithm as SuperPoint/SuperGlue (DeTone et al. 2018; Sarlin et al.
    2020) and transformers' ``simple_nms``: keep local maxima, then twice recover maxima that
    lie outside the suppressed neighbourhoods.
    """
    if nms_radius < 0:
        raise ValueError(f"nms_radius must be >= 0, got {nms_radius}")
    if nms_radius == 0:
        return scores
    zeros = torch.zeros_like(scores)
    max_mask = scores == max_pool(scores, nms_radius)
    for _ in range(2):
        supp_mask = max_pool(max_mask.to(scores.dtype), nms_radius) > 0
        supp_scores = torch.where(supp_mask, zeros, scores)
        new_max_mask = supp_scores == max_pool(supp_scores, nms_radius)
        max_mask = max_mask | (new_max_mask & ~supp_mask)
    return torch.where(max_mask, scores, zeros)


def select_keypoints(
    scores: torch.Tensor,
    threshold: float | torch.Tensor,
    border: int,
    max_keypoints: int,
    image_sizes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick keypoints from a ``(B, H, W)`` score map (after NMS), batched.

    A pixel is a keypoint when its score is ``> threshold`` (a float, or one per image as a
    ``(B,)`` tensor) and it lies at least ``border``
    pixels inside its image (``image_sizes (B, 2)`` as (height, width) of the valid region of
    each map, for batches padded to a common size; default: the whole map). With
    ``max_keypoints >= 0`` only the best ``max_keypoints`` are kept.

    Order, as transformers' SuperPoint: row-major (y, then x) when an image keeps all its
    candidates, by decreasing score when the top-k cut applies (ties in row-major order).

    Returns:
        keypoints ``(B, N, 2)`` float (x, y) pixel indices, scores ``(B, N)``, mask ``(B, N)``
        bool; padding entries are 0 / False. ``N`` is the largest count in the batch.
    """
    batch, height, width = scores.shape
    device = scores.device
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.reshape(-1, 1, 1)
    valid = scores > threshold
    if border > 0 or image_sizes is not None:
        if image_sizes is None:
            image_sizes = torch.tensor([[height, width]] * batch, device=device)
        hs, ws = image_sizes[:, 0, None], image_sizes[:, 1, None]
        ys = torch.arange(height, device=device)[None]
        xs = torch.arange(width, device=device)[None]
        inside_y = (ys >= border) & (ys < hs - border)  # (B, H)
        inside_x = (xs >= border) & (xs < ws - border)  # (B, W)
        valid &= inside_y[:, :, None] & inside_x[:, None, :]

    flat_scores = scores.reshape(batch, -1)
    flat_valid = valid.reshape(batch, -1)
    counts = flat_valid.sum(1)
    num = int(counts.max()) if batch else 0

    # Candidates of each image in row-major order, left-aligned in a (B, num) index table.
    img, idx = flat_valid.nonzero(as_tuple=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(img.numel(), device=device) - starts[img]
    order = torch.zeros((batch, num), dtype=torch.long, device=device)
    order[img, slot] = idx
    mask = torch.arange(num, device=device)[None] < counts[:, None]

    # Top-k over each image's candidates (same input order as transformers' per-image topk).
    if 0 <= max_keypoints < num:
        candidates = flat_scores.gather(1, order).masked_fill(~mask, float("-inf"))
        # A stable sort breaks ties by position, so the result does not depend on the padding
        # (the batch an image is in); torch.topk's tie order is unspecified.
        top = candidates.sort(dim=1, descending=True, stable=True).indices[:, :max_keypoints]
        cut = (counts > max_keypoints)[:, None]
        order = torch.where(cut, order.gather(1, top), order[:, :max_keypoints])
        mask = mask[:, :max_keypoints]

    kpt_scores = flat_scores.gather(1, order) * mask
    xy = torch.stack([order % width, order // width], dim=-1).to(scores.dtype)
    keypoints = xy * mask[..., None]
    return keypoints, kpt_scores, mask


def sample_descriptors(
    keypoints: torch.Tensor, descriptors: torch.Tensor, scale: int = 8
) -> torch.Tensor:
    """Bilinearly sampled, L2-normalised descriptors ``(B, N, C)`` at keypoints.

    Bilinearly interpolate a dense ``(B, C, h, w)`` descriptor map at ``(B, N, 2)`` (x, y) pixel
    keypoints of the ``scale``-times larger image; returns ``(B, N, C)`` L2-normalised.

    Same sampling as SuperGlue/LightGlue and transformers (cell centres at ``s/2 - 0.5``,
    ``align_corners=True``), so descriptors agree with those implementations.
    """
    batch, channels, height, width = descriptors.shape
    keypoints = keypoints - scale / 2 + 0.5
    divisor = torch.tensor(
        [width * scale - scale / 2 - 0.5, height * scale - scale / 2 - 0.5],
        dtype=keypoints.dtype,
        device=keypoints.device,
    )
    grid = (keypoints / divisor) * 2 - 1
    sampled = F.grid_sample(
        descriptors, grid.view(batch, 1, -1, 2), mode="bilinear", align_corners=True
    )
    sampled = F.normalize(sampled.reshape(batch, channels, -1), p=2, dim=1)
    return sampled.transpose(1, 2)


def concat_padded(outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate batched, padded extraction outputs along the batch.

    The outputs (``keypoints (B, N, 2)``, ``scores``, ``descriptors``, ``mask (B, N)``) are
    zero-padded in N to the largest.
    """
    n = max(o["mask"].shape[1] for o in outputs)
    result = {}
    for key in outputs[0]:
        parts = []
        for o in outputs:
            value = o[key]
            pad = [0, 0] * (value.ndim - 2) + [0, n - value.shape[1]]
            parts.append(F.pad(value, pad) if n > value.shape[1] else value)
        result[key] = torch.cat(parts)
    return result


def sample_map(dense: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample a ``(B, C, H, W)`` map at ``(B, N, 2)`` (x, y) pixel positions.

    Positions are on the same grid as the map (pixel centres at integers); returns ``(B, N, C)``,
    zeros outside.
    """
    batch, channels, height, width = dense.shape
    scale = keypoints.new_tensor([max(width - 1, 1), max(height - 1, 1)])
    grid = (keypoints / scale * 2 - 1)[:, :, None]
    out = F.grid_sample(dense, grid, mode="bilinear", align_corners=True)
    return out[..., 0].transpose(1, 2)


def soft_argmax_refine(
    scores: torch.Tensor, keypoints: torch.Tensor, radius: int, temperature: float = 0.1
) -> torch.Tensor:
    """Sub-pixel keypoints ``(B, N, 2)`` by a soft-argmax of the score map around each one.

    The soft-argmax of the ``(B, H, W)`` score map runs over the ``(2r+1)^2`` window around each
    ``(B, N, 2)`` integer keypoint (ALIKE/ALIKED's DKD, Zhao et al. 2022/2023):
    ``x + sum(softmax(s / T) * offset)``. The map is zero outside the image.
    """
    batch, height, width = scores.shape
    k = 2 * radius + 1
    padded = F.pad(scores, (radius, radius, radius, radius)).reshape(batch, -1)
    offsets = torch.arange(-radius, radius + 1, device=scores.device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")  # row-major window, like unfold
    dx, dy = dx.reshape(-1), dy.reshape(-1)
    x = keypoints[..., 0].long()[..., None] + radius + dx  # (B, N, k*k) in the padded map
    y = keypoints[..., 1].long()[..., None] + radius + dy
    index = (y * (width + 2 * radius) + x).reshape(batch, -1)
    window = padded.gather(1, index).reshape(batch, -1, k * k)
    weights = torch.exp((window - window.max(dim=-1, keepdim=True).values) / temperature)
    weights = weights / weights.sum(-1, keepdim=True)
    grid = torch.stack([dx, dy], dim=-1).to(scores.dtype)  # (k*k, 2) as (x, y)
    return keypoints + weights @ grid


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution in plain torch, as ``torchvision.ops.deform_conv2d``.

    Deformable convolution (Dai et al. 2017; v2 modulation with ``mask``, Zhu et al. 2019) in plain
    torch, with the semantics of ``torchvision.ops.deform_conv2d`` (stride 1, dilation 1, one offset
    group).

    Args:
        x: ``(B, C, H, W)``.
        offset: ``(B, 2*kh*kw, Ho, Wo)``, per kernel tap ``(dy, dx)`` interleaved, taps in
            row-major order, as torchvision lays them out.
        weight: ``(O, C, kh, kw)``.
        bias: ``(O,)`` or None.
        padding: zero padding added on every side of ``x`` (default 1).
        mask: ``(B, kh*kw, Ho, Wo)`` modulation or None.

    Returns ``(B, O, Ho, Wo)``. Samples are bilinear with zeros outside the image.
    """
    batch, channels, height, width = x.shape
    out_ch, _, kh, kw = weight.shape
    taps = kh * kw
    out_h, out_w = height + 2 * padding - kh + 1, width + 2 * padding - kw + 1
    dtype, device = x.dtype, x.device
    ky, kx = torch.meshgrid(
        torch.arange(kh, device=device), torch.arange(kw, device=device), indexing="ij"
    )
    oy = torch.arange(out_h, device=device, dtype=dtype).view(1, 1, -1, 1)
    ox = torch.arange(out_w, device=device, dtype=dtype).view(1, 1, 1, -1)
    offset = offset.view(batch, taps, 2, out_h, out_w)
    py = oy - padding + ky.reshape(1, -1, 1, 1).to(dtype) + offset[:, :, 0]  # (B, taps, Ho, Wo)
    px = ox - padding + kx.reshape(1, -1, 1, 1).to(dtype) + offset[:, :, 1]
    # pixel i has its centre at (2i + 1) / size - 1 with align_corners=False (works for size 1)
    grid = torch.stack([(2 * px + 1) / width - 1, (2 * py + 1) / height - 1], dim=-1)
    sampled = F.grid_sample(
        x, grid.view(batch, taps * out_h, out_w, 2), mode="bilinear", align_corners=False
    ).view(batch, channels, taps, out_h, out_w)
    if mask is not None:
        sampled = sampled * mask[:, None]
    out = torch.einsum("bckhw,ock->bohw", sampled, weight.reshape(out_ch, channels, taps))
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
