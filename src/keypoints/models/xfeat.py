"""XFeat, a fast keypoint detector and 64-d descriptor, in plain PyTorch (sparse mode).

XFeat: Potje, Cadar, Araujo, Martins, Nascimento, "XFeat: Accelerated Features for Lightweight
Image Matching", CVPR 2024. Reference: verlab/accelerated_features (Apache-2.0); the numbers here
match kornia's port (``kornia.feature.XFeat``, ``detectAndCompute``) on the same weights.

Layer names follow the reference's ``XFeatModel``, so its released ``xfeat.pt`` loads as it is
(bundled as safetensors, with the ``fine_matcher`` MLP of XFeat*, which the sparse mode does not
use). What the reference does, and this module too:

* the image is resized bilinearly to the nearest lower multiple of 32 (at least 32) on each side,
  and keypoints are reported at ``i * (W / W', H / H')`` for pixel ``i`` of the resized image;
* the network averages the channels (RGB -> gray by the mean) and instance-normalises them;
* a pixel is a keypoint when its keypoint-heatmap value exceeds ``threshold`` and every other
  value of its 5x5 window (strict maxima, none within 2 pixels of the border, as kornia's port
  does; the verlab code also keeps plateaus and, judged on a clipped window, border pixels);
* its score is that heatmap value times the reliability map (bilinear), and the ``max_keypoints``
  best are kept; descriptors are sampled bicubically from the L2-normalised dense map and
  L2-normalised again.
"""

from __future__ import annotations

from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import ops
from .base import KeypointModel
from .config import Config, check_int, check_max_keypoints, check_unit, config_class
from .protocol import DetectorInfo, Preprocessing

__all__ = ["XFeatConfig", "XFeat", "INFO", "bundled_weights", "strict_maxima"]

#: The network works on images whose sides are multiples of this (its coarsest stride).
MULTIPLE = 32

#: The registry entry: the released weights, bundled with the package.
INFO = DetectorInfo(
    name="xfeat",
    kind="learned",
    descriptor_dim=64,
    license="Apache-2.0",
    weights="bundled with the package",
    load=lambda: XFeat.from_pretrained(),
    available=lambda: True,
    matcher_weights="xfeat-lighterglue",
    preprocessing=Preprocessing(channels=3, pad_multiple=1),
)


@config_class
class XFeatConfig(Config):
    """XFeat options (the reference's names in brackets).

    ``max_keypoints`` (top_k): keep the best this many keypoints by score, -1 for all.
    ``threshold`` (detection_threshold): a keypoint's heatmap value must exceed it.
    ``nms_radius``: a keypoint is the strict maximum of its ``(2r+1) x (2r+1)`` window and lies
    at least r pixels inside the (resized) image; the reference's 5x5 window is r = 2.
    """

    aliases = {
        "top_k": "max_keypoints",
        "max_num_keypoints": "max_keypoints",
        "detection_threshold": "threshold",
    }

    max_keypoints: int = 4096
    threshold: float = 0.05
    nms_radius: int = 2

    def validate(self) -> None:
        """Raise ConfigError unless the options are in range."""
        check_max_keypoints(self.max_keypoints)
        check_unit("threshold", self.threshold)
        check_int("nms_radius", self.nms_radius, 1, 16)


def bundled_weights():
    """Path (a Traversable) of the bundled XFeat weights (Apache-2.0, see weights/LICENSE-XFEAT)."""
    return resources.files("keypoints") / "weights" / "xfeat.safetensors"


def strict_maxima(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels strictly greater than every other value of their window, as a bool map.

    ``scores (B, H, W)`` -> ``(B, H, W)`` bool: True where the value exceeds the other
    ``(2r+1)^2 - 1`` values of its window. Pixels within ``radius`` of the border (whose window
    runs off the map) are never maxima, nor are plateaus: the same as kornia's
    ``nms2d(mask_only=True)``. Computed with in-place maxima of shifted slices (a row-wise max,
    then the rows above and below and the centre row's neighbours): about 5x faster on CPU than
    one comparison per neighbour, and much faster than ``max_pool2d``.
    """
    batch, height, width = scores.shape
    out = torch.zeros_like(scores, dtype=torch.bool)
    r, k = radius, 2 * radius + 1
    inner_h, inner_w = height - 2 * r, width - 2 * r
    if inner_h <= 0 or inner_w <= 0:
        return out
    # rows[:, y, x - r] = max of scores[:, y, x - r : x + r + 1], for the interior columns x
    rows = scores[:, :, :inner_w].clone()
    for dx in range(1, k):
        torch.maximum(rows, scores[:, :, dx : dx + inner_w], out=rows)
    # the whole window rows above and below the centre, then the centre row's other pixels
    others = rows[:, :inner_h].clone()
    for dy in range(1, k):
        if dy != r:
            torch.maximum(others, rows[:, dy : dy + inner_h], out=others)
    for dx in range(k):
        if dx != r:
            torch.maximum(others, scores[:, r : r + inner_h, dx : dx + inner_w], out=others)
    out[:, r : r + inner_h, r : r + inner_w] = scores[:, r : r + inner_h, r : r + inner_w] > others
    return out


def _sample(maps: torch.Tensor, positions: torch.Tensor, size: tuple[int, int], mode: str):
    """Sample ``(B, C, h, w)`` maps at ``(B, N, 2)`` (x, y) pixels of an ``(H, W)`` image.

    The reference's convention (its ``InterpolateSparse2d``, which the weights were trained
    with): the position is normalised by ``(W - 1, H - 1)`` but sampled with
    ``align_corners=False``, i.e. read at ``x * w / (W - 1) - 0.5`` of the map. Returns
    ``(B, N, C)``.
    """
    height, width = size
    scale = positions.new_tensor([width - 1, height - 1])
    grid = (positions / scale * 2 - 1)[:, :, None].to(maps.dtype)
    sampled = F.grid_sample(maps, grid, mode=mode, align_corners=False)
    return sampled[..., 0].transpose(1, 2)


# Building blocks (reference names) -------------------------------------------------------------
class BasicLayer(nn.Module):
    """Convolution (no bias), BatchNorm without affine parameters, ReLU (as ``layer.0/1/2``)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, H, W)`` -> ``(B, c_out, H / stride, W / stride)``."""
        return self.layer(x)


def _fine_matcher() -> nn.Sequential:
    """XFeat*'s match-refinement MLP (128 -> 4 x 512 -> 64); kept so the weights load as released.

    The sparse mode does not use it.
    """
    layers: list[nn.Module] = []
    for c_in in (128, 512, 512, 512):
        layers += [nn.Linear(c_in, 512), nn.BatchNorm1d(512, affine=False), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(512, 64))


# The network -----------------------------------------------------------------------------------
class XFeat(KeypointModel):
    """XFeat network and sparse keypoint extraction (the reference's ``detectAndCompute``).

    ``forward(image, image_sizes=None, **options)``: ``image (B, C, H, W)`` float in [0, 1]
    (RGB, or gray with C = 1; the channels are averaged; any size), optionally
    ``image_sizes (B, 2)`` (height, width) of the valid region of each image (each is then
    processed alone, cropped to it). Returns batched, zero-padded ``keypoints (B, N, 2)`` float32
    (x, y) in pixels of ``image``, ``scores (B, N)`` (heatmap value times reliability, sorted
    decreasing), ``descriptors (B, N, 64)`` L2-normalised, ``mask (B, N)`` bool.

    Keypoints are integer pixels ``i`` of the image resized to multiples of 32 (``H' x W'``),
    reported at ``i * (W / W', H / H')`` as the reference does: pixel centres at integers
    exactly when ``H`` and ``W`` are multiples of 32, otherwise off by ``(W / W' - 1) / 2``
    pixels at most (0.008 px at 650 wide; the centre of resized pixel ``i`` is at
    ``(i + 0.5) * W / W' - 0.5``).
    """

    config_class = XFeatConfig

    def __init__(self, config: XFeatConfig | None = None, **overrides) -> None:
        """Build an untrained network from ``config`` (or the defaults) and ``overrides``."""
        super().__init__(config, **overrides)
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1))
        self.block1 = nn.Sequential(
            BasicLayer(1, 4), BasicLayer(4, 8, stride=2), BasicLayer(8, 8),
            BasicLayer(8, 24, stride=2),
        )  # fmt: skip
        self.block2 = nn.Sequential(BasicLayer(24, 24), BasicLayer(24, 24))
        self.block3 = nn.Sequential(
            BasicLayer(24, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64, 1)
        )
        self.block4 = nn.Sequential(
            BasicLayer(64, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64)
        )
        self.block5 = nn.Sequential(
            BasicLayer(64, 128, stride=2), BasicLayer(128, 128), BasicLayer(128, 128),
            BasicLayer(128, 64, 1),
        )  # fmt: skip
        self.block_fusion = nn.Sequential(
            BasicLayer(64, 64), BasicLayer(64, 64), nn.Conv2d(64, 64, 1)
        )
        self.heatmap_head = nn.Sequential(
            BasicLayer(64, 64, 1), BasicLayer(64, 64, 1), nn.Conv2d(64, 1, 1), nn.Sigmoid()
        )
        self.keypoint_head = nn.Sequential(
            BasicLayer(64, 64, 1), BasicLayer(64, 64, 1), BasicLayer(64, 64, 1),
            nn.Conv2d(64, 65, 1),
        )  # fmt: skip
        self.fine_matcher = _fine_matcher()
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # kept on load

    @property
    def info(self) -> DetectorInfo:
        """The registry entry."""
        return INFO

    @staticmethod
    def network_size(height: int, width: int) -> tuple[int, int]:
        """(height, width) the network sees: each side rounded down to a multiple of 32, >= 32."""
        return max(MULTIPLE, height - height % MULTIPLE), max(MULTIPLE, width - width % MULTIPLE)

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Keypoint heatmap, dense descriptors and reliability of ``(B, C, H, W)`` images.

        ``H`` and ``W`` must be multiples of 32 (see :meth:`network_size`). Returns the heatmap
        ``(B, H, W)`` (per-pixel keypoint probabilities, the softmax over each 8x8 cell and a
        dustbin), descriptors ``(B, 64, H/8, W/8)`` L2-normalised over channels, reliability
        ``(B, 1, H/8, W/8)`` in [0, 1]. Runs channels-last (weights and activations), about 1.25x
        faster on CPU than the default layout (the same numbers to about 1e-6).
        """
        image = image.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():  # as the reference: no gradient through the input normalisation
            x = F.instance_norm(image.mean(dim=1, keepdim=True), eps=1e-5)
        # backbone: 1/4 (with a skip from the input), 1/8, 1/16, 1/32
        x1 = self.block1(x)
        x2 = self.block2(x1 + self.skip1(x))
        x3 = self.block3(x2)
        x4 = self.block4(x3)
        x5 = self.block5(x4)
        # fusion at 1/8 of the coarser scales, upsampled bilinearly
        size = x3.shape[-2:]
        x4 = F.interpolate(x4, size, mode="bilinear", align_corners=False)
        x5 = F.interpolate(x5, size, mode="bilinear", align_corners=False)
        features = self.block_fusion(x3 + x4 + x5)
        reliability = self.heatmap_head(features)
        # keypoint logits from the normalised image's 8x8 cells (64 pixels + dustbin per cell)
        logits = self.keypoint_head(F.pixel_unshuffle(x, 8))
        heatmap = ops.cells_to_heatmap(logits, 8)
        return heatmap, F.normalize(features, dim=1), reliability

    def forward(
        self, image: torch.Tensor, image_sizes: torch.Tensor | None = None, **options
    ) -> dict[str, torch.Tensor]:
        """See the class docstring."""
        conf = self.config.replace(**options) if options else self.config
        if image.ndim != 4 or image.shape[1] not in (1, 3):
            raise ConfigError(f"XFeat expects (B, 3 or 1, H, W) images, got {tuple(image.shape)}")
        _, _, height, width = image.shape
        if image_sizes is not None and bool(
            (image_sizes != image_sizes.new_tensor([height, width])).any()
        ):
            # images smaller than the batch: each alone, cropped to its valid region (the resize
            # to multiples of 32 depends on the size)
            return ops.concat_padded(
                [
                    self(image[i : i + 1, :, : int(h), : int(w)], **options)
                    for i, (h, w) in enumerate(image_sizes.tolist())
                ]
            )

        # 1. resize to multiples of 32 (bilinear, as the reference) and the dense maps
        size = self.network_size(height, width)
        if size != (height, width):
            image = F.interpolate(image, size, mode="bilinear", align_corners=False)
        heatmap, dense_descriptors, reliability = self.dense(image)

        # 2. strict maxima (5x5 by default) above the threshold, in row-major order
        radius = conf.nms_radius
        maxima = torch.where(strict_maxima(heatmap, radius), heatmap, 0.0)
        candidates, values, mask = ops.select_keypoints(maxima, conf.threshold, radius, -1)

        # 3. scores = heatmap value x reliability; the best max_keypoints, sorted decreasing
        scores = values * _sample(reliability, candidates, size, "bilinear")[..., 0]
        scores = scores.masked_fill(~mask, -1.0)
        order = scores.sort(dim=1, descending=True, stable=True).indices
        if conf.max_keypoints >= 0:
            order = order[:, : conf.max_keypoints]
        scores = scores.gather(1, order)
        candidates = candidates.gather(1, order[..., None].expand(-1, -1, 2))
        mask = scores > 0

        # 4. descriptors: bicubic samples of the normalised dense map, normalised again
        descriptors = _sample(dense_descriptors, candidates, size, "bicubic")
        descriptors = F.normalize(descriptors, dim=-1)

        # 5. back to the input image's pixels, as the reference: i * (W / W', H / H')
        ratio = candidates.new_tensor([width / size[1], height / size[0]])
        return {
            "keypoints": candidates * ratio * mask[..., None],
            "scores": scores * mask,
            "descriptors": descriptors * mask[..., None],
            "mask": mask,
        }

    # weights ----------------------------------------------------------------------------------
    weight_names = ("xfeat",)

    def default_weights(self):
        """The bundled weights (Apache-2.0, no network); the reference's ``xfeat.pt`` also loads."""
        return bundled_weights()
