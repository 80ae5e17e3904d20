"""The shared ops (keypoints/models/ops.py) against reference algorithms: NMS, keypoint
selection, descriptor sampling, deformable convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from keypoints.models import ops
from keypoints.models.ops import deform_conv2d


@pytest.mark.parametrize("radius", [0, 1, 4])
def test_separable_nms_equals_square_pool(radius):
    scores = torch.rand(2, 37, 53)
    scores[0, 10:14, 10:14] = 0.99  # a plateau: ties must be kept as the reference does
    k = 2 * radius + 1
    torch.testing.assert_close(
        ops.max_pool(scores, radius), F.max_pool2d(scores, k, 1, radius), rtol=0, atol=0
    )
    if radius:
        pool = lambda x: F.max_pool2d(x, k, 1, radius)  # noqa: E731  (reference, SuperGlue)
        max_mask = scores == pool(scores)
        for _ in range(2):
            supp = pool(max_mask.float()) > 0
            s = torch.where(supp, torch.zeros_like(scores), scores)
            max_mask = max_mask | ((s == pool(s)) & ~supp)
        expected = torch.where(max_mask, scores, torch.zeros_like(scores))
        assert torch.equal(ops.simple_nms(scores, radius), expected)


def test_select_keypoints_matches_per_image_reference():
    torch.manual_seed(3)
    scores = ops.simple_nms(torch.rand(3, 40, 48) ** 4, 2)
    scores[2] = 0  # an image without keypoints in the batch
    for max_kp in (-1, 5, 10_000):
        kp, sc, mask = ops.select_keypoints(scores, 0.1, 3, max_kp)
        for b in range(3):
            yx = torch.nonzero(scores[b] > 0.1)
            inside = (yx >= 3).all(1) & (yx[:, 0] < 40 - 3) & (yx[:, 1] < 48 - 3)
            yx = yx[inside]
            s = scores[b][tuple(yx.t())]
            if 0 <= max_kp < len(s):
                s, idx = s.topk(max_kp)
                yx = yx[idx]
            n = int(mask[b].sum())
            assert n == len(s)
            assert torch.equal(kp[b, :n], yx.flip(1).float())
            assert torch.equal(sc[b, :n], s)


def test_sample_descriptors_hits_cells_exactly():
    """SuperPoint's sampling maps pixel 3.5 onto the first cell and the last pixel (8w - 1)
    onto the last cell, linearly in between (SuperGlue's sample_descriptors)."""
    h, w = 5, 7
    dense = F.normalize(torch.randn(1, 16, h, w), dim=1)
    step_x, step_y = (8 * w - 4.5) / (w - 1), (8 * h - 4.5) / (h - 1)
    kp = torch.tensor([[[3.5, 3.5], [8 * w - 1, 8 * h - 1], [3.5 + 2 * step_x, 3.5 + step_y]]])
    got = ops.sample_descriptors(kp, dense)
    expected = torch.stack([dense[0, :, 0, 0], dense[0, :, h - 1, w - 1], dense[0, :, 1, 2]])
    torch.testing.assert_close(got[0], expected)


def test_deform_conv_equals_conv2d_with_zero_offsets():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 11, 13), torch.randn(7, 5, 3, 3), torch.randn(7)
    got = deform_conv2d(x, torch.zeros(2, 18, 11, 13), w, b, padding=1)
    torch.testing.assert_close(got, F.conv2d(x, w, b, padding=1), atol=1e-4, rtol=1e-4)


def test_deform_conv_with_integer_offsets_and_mask_equals_unfolded_sum():
    """With integer offsets every tap reads one pixel: the result is a sum over taps of the
    weights times pixels gathered from the zero-padded input (an unfold with moved taps)."""
    torch.manual_seed(1)
    bsz, c, h, w = 2, 4, 9, 10
    x, weight = torch.randn(bsz, c, h, w), torch.randn(6, c, 3, 3)
    offset = torch.randint(-3, 4, (bsz, 18, h, w)).float()
    mask = torch.rand(bsz, 9, h, w)
    pad = 4  # 1 for the kernel + 3 for the largest offset
    padded = F.pad(x, (pad, pad, pad, pad))
    expected = torch.zeros(bsz, 6, h, w)
    oy, ox = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for tap in range(9):
        ky, kx = divmod(tap, 3)
        ys = oy + ky - 1 + offset[:, 2 * tap].long() + pad  # (B, H, W)
        xs = ox + kx - 1 + offset[:, 2 * tap + 1].long() + pad
        flat = (ys * (w + 2 * pad) + xs).reshape(bsz, 1, -1).expand(-1, c, -1)
        taps = padded.reshape(bsz, c, -1).gather(2, flat).reshape(bsz, c, h, w)
        expected += torch.einsum(
            "bchw,oc->bohw", taps * mask[:, tap : tap + 1], weight[:, :, ky, kx]
        )
    got = deform_conv2d(x, offset, weight, None, padding=1, mask=mask)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
