"""Shared pure tensor functions for keypoint models: NMS, keypoint selection, descriptor sampling.

All functions are batched and contain no per-image or per-keypoint Python loops. Keypoints are
(x, y) pixel coordinates, pixel centres at integers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["max_pool", "simple_nms", "select_keypoints", "sample_descriptors"]


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
    threshold: float,
    border: int,
    max_keypoints: int,
    image_sizes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick keypoints from a ``(B, H, W)`` score map (after NMS), batched.

    A pixel is a keypoint when its score is ``> threshold`` and it lies at least ``border``
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
    """Bilinearly interpolate a dense ``(B, C, h, w)`` descriptor map at ``(B, N, 2)`` (x, y)
    pixel keypoints of the ``scale``-times larger image; returns ``(B, N, C)`` L2-normalised.

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
