"""ALIKED (Zhao, Wu, Wang, Jiang, Chen, "ALIKED: A Lighter Keypoint and Descriptor Extraction
Network via Deformable Transformation", IEEE TIM 2023), in plain PyTorch.

Layer names follow the reference (Shiaoming/ALIKED, BSD-3), so its released weights load as
they are; the four variants are bundled with the package as safetensors. The deformable
convolutions run on :func:`keypoints.models.ops.deform_conv2d` (plain torch, no torchvision),
and detection and descriptor sampling are batched (padded with a mask) instead of looping over
images.
"""

from __future__ import annotations

import os
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, closest
from . import ops
from .base import KeypointModel
from .config import check_int, check_max_keypoints, check_unit, config_class
from .weights import load_state_dict, resolve_checkpoint

__all__ = ["ALIKEDConfig", "ALIKED", "VARIANTS", "bundled_weights"]

# c1, c2, c3, c4, dim, K (descriptor patch), M (descriptor sample positions); from the paper
VARIANTS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "aliked-t16": (8, 16, 32, 64, 64, 3, 16),
    "aliked-n16": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n16rot": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n32": (16, 32, 64, 128, 128, 3, 32),
}
#: In threshold mode without max_keypoints, at most this many keypoints (as LightGlue).
MAX_KEYPOINTS_LIMIT = 20000


@config_class
class ALIKEDConfig:
    """ALIKED options (LightGlue's names in brackets).

    ``model_name``: one of :data:`VARIANTS`. ``max_keypoints`` (max_num_keypoints): -1 for
    no limit. ``threshold`` (detection_threshold): keep NMS maxima scoring above it; with
    ``threshold=0`` and ``max_keypoints=K`` exactly the K best maxima are returned (top-k mode),
    with ``threshold=0`` alone those above each image's mean score. When no maximum passes the
    threshold, the image's mean score is used instead (as the reference does). ``nms_radius``:
    NMS and sub-pixel window radius; the same distance is kept from the image border.
    """

    aliases = {"detection_threshold": "threshold", "max_num_keypoints": "max_keypoints"}

    model_name: str = "aliked-n16"
    max_keypoints: int = -1
    threshold: float = 0.2
    nms_radius: int = 2

    def validate(self) -> None:
        if self.model_name not in VARIANTS:
            raise ConfigError(
                f"model_name='{self.model_name}' is not an ALIKED variant"
                f"{closest(self.model_name, VARIANTS)}; allowed: {', '.join(VARIANTS)}"
            )
        check_max_keypoints(self.max_keypoints)
        check_unit("threshold", self.threshold)
        check_int("nms_radius", self.nms_radius, 1, 16)


def bundled_weights(model_name: str):
    """Path (a Traversable) of a bundled ALIKED checkpoint (BSD-3, see weights/LICENSE-ALIKED)."""
    return resources.files("keypoints") / "weights" / f"{model_name}.safetensors"


# Building blocks (reference names: conv1/bn1/conv2/bn2, offset_conv/regular_conv) -----------
class DeformableConv2d(nn.Module):
    """3x3 deformable convolution whose offsets come from a plain 3x3 convolution of the input,
    clamped to a quarter of the map size (the reference's DeformableConv2d, without mask)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        taps = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, padding=self.padding)
        self.regular_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=self.padding, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        limit = max(x.shape[-2:]) / 4.0
        offset = self.offset_conv(x).clamp(-limit, limit)
        return ops.deform_conv2d(x, offset, self.regular_conv.weight, None, self.padding)


def _conv(c_in: int, c_out: int, deformable: bool) -> nn.Module:
    if deformable:
        return DeformableConv2d(c_in, c_out)
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """conv-BN-SELU twice."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv(c_out, c_out, False), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.selu(self.bn1(self.conv1(x)))
        return F.selu(self.bn2(self.conv2(x)))


class ResBlock(nn.Module):
    """A ResNet basic block with a 1x1 projection shortcut, optionally deformable."""

    def __init__(self, c_in: int, c_out: int, deformable: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, deformable), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv(c_out, c_out, deformable), nn.BatchNorm2d(c_out)
        self.downsample = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.selu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.selu(out + self.downsample(x))


class SDDH(nn.Module):
    """Sparse deformable descriptor head: per keypoint, M offsets are predicted from its 3x3
    feature patch, features are sampled there, projected and aggregated into one descriptor."""

    def __init__(self, dim: int, kernel_size: int, positions: int) -> None:
        super().__init__()
        self.kernel_size, self.positions = kernel_size, positions
        self.offset_conv = nn.Sequential(
            nn.Conv2d(dim, 2 * positions, kernel_size),
            nn.SELU(),
            nn.Conv2d(2 * positions, 2 * positions, 1),
        )
        self.sf_conv = nn.Conv2d(dim, dim, 1, bias=False)
        self.agg_weights = nn.Parameter(torch.rand(positions, dim, dim))

    def forward(self, features: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """``features (B, C, H, W)``, ``keypoints (B, N, 2)`` float pixels -> ``(B, N, C)``."""
        batch, channels, height, width = features.shape
        n, k = keypoints.shape[1], self.kernel_size
        # 1. the k x k patch whose corner is at trunc(x - k/2 + 1), clamped into the map
        #    (the reference's get_patches: integer keypoint, then that corner)
        corner = (keypoints.long() - k / 2 + 1).long()
        cx = corner[..., 0].clamp(0, max(width - 1 - k, 0))
        cy = corner[..., 1].clamp(0, max(height - 1 - k, 0))
        steps = torch.arange(k, device=features.device)
        ys = (cy[..., None, None] + steps[:, None]).clamp(max=height - 1)  # (B, N, k, 1)
        xs = (cx[..., None, None] + steps[None, :]).clamp(max=width - 1)  # (B, N, 1, k)
        index = (ys * width + xs).reshape(batch, 1, n * k * k).expand(-1, channels, -1)
        patches = features.reshape(batch, channels, -1).gather(2, index)
        patches = patches.view(batch, channels, n, k, k).transpose(1, 2).reshape(-1, channels, k, k)
        # 2. offsets for the M sample positions, clamped like the dense deformable convs
        limit = max(height, width) / 4.0
        offsets = self.offset_conv(patches).clamp(-limit, limit)  # (B*N, 2M, 1, 1)
        offsets = offsets.view(batch, n, 2, self.positions).transpose(2, 3)  # (B, N, M, 2)
        # 3. bilinear samples at keypoint + offset, then projection and weighted aggregation
        positions = keypoints[:, :, None] + offsets
        sampled = ops.sample_map(features, positions.reshape(batch, n * self.positions, 2))
        sampled = sampled.view(batch, n, self.positions, channels)
        projected = F.selu(sampled @ self.sf_conv.weight[:, :, 0, 0].t())  # (B, N, M, C)
        descriptors = torch.einsum("bnmc,mcd->bnd", projected, self.agg_weights)
        return F.normalize(descriptors, p=2, dim=-1)


# The network ---------------------------------------------------------------------------------
class ALIKED(KeypointModel):
    """ALIKED network and keypoint extraction.

    ``extract(image, image_sizes=None, **options)``: ``image (B, 3, H, W)`` RGB float in [0, 1]
    (any size; the network pads to a multiple of 32 itself, by edge replication), optionally
    ``image_sizes (B, 2)`` (height, width) of the valid region of each image. Returns batched,
    padded ``keypoints (B, N, 2)`` sub-pixel (x, y) pixels, ``scores (B, N)``,
    ``descriptors (B, N, D)`` (L2-normalised, D = 64 or 128), ``mask (B, N)``.
    """

    config_class = ALIKEDConfig
    input_channels = 3
    pad_multiple = 1

    def __init__(self, config: ALIKEDConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.name = self.config.model_name
        c1, c2, c3, c4, dim, k, m = VARIANTS[self.config.model_name]
        self.block1 = ConvBlock(3, c1)
        self.block2 = ResBlock(c1, c2, deformable=False)
        self.block3 = ResBlock(c2, c3, deformable=True)
        self.block4 = ResBlock(c3, c4, deformable=True)
        self.conv1 = nn.Conv2d(c1, dim // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(c2, dim // 4, 1, bias=False)
        self.conv3 = nn.Conv2d(c3, dim // 4, 1, bias=False)
        self.conv4 = nn.Conv2d(dim, dim // 4, 1, bias=False)
        self.score_head = nn.Sequential(
            nn.Conv2d(dim, 8, 1, bias=False),
            nn.SELU(),
            nn.Conv2d(8, 4, 3, padding=1, bias=False),
            nn.SELU(),
            nn.Conv2d(4, 4, 3, padding=1, bias=False),
            nn.SELU(),
            nn.Conv2d(4, 1, 3, padding=1, bias=False),
        )
        self.desc_head = SDDH(dim, k, m)
        self.to(memory_format=torch.channels_last)  # loading weights keeps this layout

    @property
    def descriptor_dim(self) -> int:
        return VARIANTS[self.config.model_name][4]

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` -> score map ``(B, H, W)`` in [0, 1] and L2-normalised feature map
        ``(B, dim, H, W)``. Runs channels-last (weights and activations), which is about 1.7x
        faster on CPU than the default layout for the same fp32 arithmetic."""
        image = image.contiguous(memory_format=torch.channels_last)
        height, width = image.shape[-2:]
        pad_h, pad_w = -height % 32, -width % 32
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        x = F.pad(image, pads, mode="replicate") if pad_h or pad_w else image
        # encoder at 1, 1/2, 1/8 and 1/32 resolution
        x1 = self.block1(x)
        x2 = self.block2(F.avg_pool2d(x1, 2))
        x3 = self.block3(F.avg_pool2d(x2, 4))
        x4 = self.block4(F.avg_pool2d(x3, 4))
        # aggregation: project each scale to dim/4 channels and upsample to full resolution
        up = {"mode": "bilinear", "align_corners": True}
        x1 = F.selu(self.conv1(x1))
        x2 = F.interpolate(F.selu(self.conv2(x2)), scale_factor=2, **up)
        x3 = F.interpolate(F.selu(self.conv3(x3)), scale_factor=8, **up)
        x4 = F.interpolate(F.selu(self.conv4(x4)), scale_factor=32, **up)
        features = torch.cat([x1, x2, x3, x4], dim=1)
        scores = torch.sigmoid(self.score_head(features))[:, 0]
        features = F.normalize(features, p=2, dim=1)
        top, left = pads[2], pads[0]
        crop = (slice(top, top + height), slice(left, left + width))
        return scores[:, crop[0], crop[1]], features[:, :, crop[0], crop[1]]

    def extract(
        self, image: torch.Tensor, image_sizes: torch.Tensor | None = None, **options
    ) -> dict[str, torch.Tensor]:
        conf = self.config.replace(**options) if options else self.config
        if image.ndim != 4 or image.shape[1] != 3:
            raise ConfigError(f"ALIKED expects (B, 3, H, W) images, got {tuple(image.shape)}")
        batch, _, height, width = image.shape
        radius = conf.nms_radius

        # 1. dense score and feature maps
        scores, features = self.dense(image)

        # 2. NMS, then the threshold (or top-k) mode of the reference, batched
        nms = self.nms(scores, radius)
        if conf.threshold > 0 or conf.max_keypoints < 0:
            limit = conf.max_keypoints if conf.max_keypoints > 0 else MAX_KEYPOINTS_LIMIT
            threshold = self._thresholds(scores, nms, conf.threshold, radius, image_sizes)
        else:  # top-k mode: the K best maxima
            limit, threshold = conf.max_keypoints, torch.zeros(batch, device=image.device)
        keypoints, _, mask = ops.select_keypoints(nms, threshold, radius, limit, image_sizes)

        # 3. sub-pixel positions (soft-argmax) and their bilinearly sampled scores. The
        #    reference passes positions through [-1, 1] coordinates; doing the same keeps its
        #    integer truncations in the descriptor head identical.
        refined = ops.soft_argmax_refine(scores, keypoints, radius)
        wh = refined.new_tensor([width - 1, height - 1])
        refined = ((refined / wh * 2 - 1) / 2 + 0.5) * wh
        kpt_scores = ops.sample_map(scores[:, None], refined)[..., 0]

        # 4. descriptors from the sparse deformable head
        descriptors = self.desc_head(features, refined)
        return {
            "keypoints": refined * mask[..., None],
            "scores": kpt_scores * mask,
            "descriptors": descriptors * mask[..., None],
            "mask": mask,
        }

    @staticmethod
    def _thresholds(scores, nms, threshold, border, image_sizes) -> torch.Tensor:
        """Per image: ``threshold``, or the image's mean score when no NMS maximum inside the
        border passes it (or when ``threshold`` is 0), as the reference's DKD does."""
        batch = scores.shape[0]
        means = scores.reshape(batch, -1).mean(1)
        if threshold <= 0:
            return means
        _, _, found = ops.select_keypoints(nms, threshold, border, 1, image_sizes)
        fixed = torch.full_like(means, threshold)
        return torch.where(found.any(1), fixed, means)

    # weights --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike | None = None,
        *,
        strict: bool = True,
        backend: str = "auto",
        precision: str = "fp32",
        **overrides,
    ) -> ALIKED:
        """Load a variant: ``source`` None or a variant name takes the bundled weights (no
        network); otherwise a checkpoint path (``.pth`` read with ``weights_only=True``, or
        ``.safetensors``) for the variant given by ``model_name=``."""
        if source is not None and os.fspath(source) in VARIANTS:
            overrides.setdefault("model_name", os.fspath(source))
            source = None
        config = ALIKEDConfig(**overrides)
        model = cls(config)
        if source is None:
            with resources.as_file(bundled_weights(config.model_name)) as path:
                state = load_state_dict(path)
        else:
            state = load_state_dict(resolve_checkpoint(source, config=False).weights)
        return model.prepared(state, strict, backend, precision)
