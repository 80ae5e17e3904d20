"""ALIKED, a lightweight keypoint and descriptor network, in plain PyTorch.

ALIKED: Zhao, Wu, Wang, Jiang, Chen, "ALIKED: A Lighter Keypoint and Descriptor Extraction Network
via Deformable Transformation", IEEE TIM 2023.

Layer names follow the reference (Shiaoming/ALIKED, BSD-3), so its released weights load as they
are; the four variants are bundled with the package as safetensors. The deformable convolutions run
on :func:`keypoints.models.ops.deform_conv2d` (plain torch, no torchvision), and detection and
descriptor sampling are batched (padded with a mask) instead of looping over images.
"""

from __future__ import annotations

from importlib import resources
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, closest
from . import ops
from .base import KeypointModel
from .config import Config, check_int, check_max_keypoints, check_unit, config_class
from .protocol import DetectorInfo, Preprocessing

__all__ = ["ALIKEDConfig", "ALIKED", "VARIANTS", "INFOS", "bundled_weights"]

# c1, c2, c3, c4, dim, K (descriptor patch), M (descriptor sample positions); from the paper
VARIANTS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "aliked-t16": (8, 16, 32, 64, 64, 3, 16),
    "aliked-n16": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n16rot": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n32": (16, 32, 64, 128, 128, 3, 32),
}
#: In threshold mode without max_keypoints, at most this many keypoints (as LightGlue).
MAX_KEYPOINTS_LIMIT = 20000
#: cvg released LightGlue weights for ALIKED-n16's descriptors ("aliked_lightglue.pth"). They
#: also fit n16rot's (same architecture, trained from the same recipe with rotations): on the 15
#: Oxford pairs n16rot + these weights gave MMA@3 0.840 and AUC@5 0.580 (n16: 0.821, 0.546), and
#: on five upright PhotoTourism/ScanNet pairs a similar number of fundamental-matrix inliers
#: (1205 in total against n16's 1115).
MATCHER_WEIGHTS = {"aliked-n16": "aliked", "aliked-n16rot": "aliked"}


def _info(variant: str) -> DetectorInfo:
    return DetectorInfo(
        name=variant,
        kind="learned",
        descriptor_dim=VARIANTS[variant][4],
        license="BSD-3-Clause",
        weights="bundled with the package",
        load=lambda: ALIKED.from_pretrained(variant),
        available=lambda: True,
        matcher_weights=MATCHER_WEIGHTS.get(variant),
        preprocessing=Preprocessing(channels=3, pad_multiple=1),
    )


#: The registry entries, one per released variant (weights bundled).
INFOS = {variant: _info(variant) for variant in VARIANTS}


@config_class
class ALIKEDConfig(Config):
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
        """Raise ConfigError unless ``model_name`` is a variant and the options are in range."""
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
    """3x3 deformable convolution whose offsets come from a plain 3x3 convolution.

    The offsets are computed from the input and clamped to a quarter of the map size (the
    reference's DeformableConv2d, without mask).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        taps = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, padding=self.padding)
        self.regular_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=self.padding, bias=False
        )

    def forward(
        self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Deformable convolution of ``x``; ``weight``/``bias`` replace the regular conv's."""
        limit = max(x.shape[-2:]) / 4.0
        offset = self.offset_conv(x).clamp(-limit, limit)
        weight = self.regular_conv.weight if weight is None else weight
        return ops.deform_conv2d(x, offset, weight, bias, self.padding)


def folded(conv: nn.Module, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (inference: running statistics).

    ``w' = w * g / sqrt(var + eps)``, ``b' = beta - mean * g / sqrt(var + eps)`` per output
    channel (conv without bias). Cached on ``bn`` until any of the tensors changes, so loading
    other weights or training refolds.
    """
    layer = conv.regular_conv if isinstance(conv, DeformableConv2d) else conv
    weight = cast(torch.Tensor, layer.weight)
    mean, var = cast(torch.Tensor, bn.running_mean), cast(torch.Tensor, bn.running_var)
    tensors = (weight, bn.weight, bn.bias, mean, var)
    key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    cached = getattr(bn, "_folded", None)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(var + bn.eps)
            fused = (weight * scale[:, None, None, None]).contiguous(
                memory_format=torch.channels_last
            )
            bias = bn.bias - mean * scale
        cached = (key, fused, bias)
        bn._folded = cached  # type: ignore[assignment]
    return cached[1], cached[2]


def conv_bn(conv: nn.Module, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``, as one convolution with the batch norm folded in when inferring.

    Exact up to rounding (about 1e-7 relative); in training the two layers run as they are.
    """
    if bn.training or torch.is_grad_enabled() and bn.weight.requires_grad:
        return bn(conv(x))
    weight, bias = folded(conv, bn)
    if isinstance(conv, DeformableConv2d):
        return conv(x, weight, bias)
    return F.conv2d(x, weight, bias, padding=cast(nn.Conv2d, conv).padding)


def _conv(c_in: int, c_out: int, deformable: bool) -> nn.Module:
    if deformable:
        return DeformableConv2d(c_in, c_out)
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """conv-BN-SELU twice.

    (SELUs run in place here: torch's out-of-place SELU costs twice as much on CPU, mostly in
    touching freshly allocated memory.)
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv(c_out, c_out, False), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.selu(conv_bn(self.conv1, self.bn1, x), inplace=True)
        return F.selu(conv_bn(self.conv2, self.bn2, x), inplace=True)


class ResBlock(nn.Module):
    """A ResNet basic block with a 1x1 projection shortcut, optionally deformable."""

    def __init__(self, c_in: int, c_out: int, deformable: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, deformable), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv(c_out, c_out, deformable), nn.BatchNorm2d(c_out)
        self.downsample = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.selu(conv_bn(self.conv1, self.bn1, x), inplace=True)
        out = conv_bn(self.conv2, self.bn2, out)
        return F.selu(out.add_(self.downsample(x)), inplace=True)


class FeatureMaps:
    """ALIKED's dense feature map, computed only where it is read.

    The reference builds a full-resolution ``(B, dim, H, W)`` map: the four scale maps
    ``levels`` (``(B, dim/4, h_i, w_i)`` at 1, 1/2, 1/8 and 1/32 of the padded image),
    upsampled bilinearly (``align_corners=True``) to full resolution, concatenated and
    L2-normalised over channels. Only the descriptor head reads it, at a few pixels per
    keypoint, so :meth:`at` computes exactly those vectors (the same arithmetic per pixel) and
    the full map (about 300 MiB at 1024x768 for dim 128) is never built.

    ``offset`` = (left, top) of the image inside the padded maps, ``size`` = (height, width) of
    the image; positions are pixels of the image, centres at integers.
    """

    def __init__(self, levels: tuple[torch.Tensor, ...], offset: tuple[int, int],
                 size: tuple[int, int]) -> None:  # fmt: skip
        self.offset, self.size = offset, size
        batch, channels, self.height, self.width = levels[0].shape
        # pixels as rows: a view of a channels-last map, gathered without copying the map
        self.full = levels[0].permute(0, 2, 3, 1).reshape(batch, -1, channels)
        # channels-last coarse maps: grid_sample then reads each sample's channels contiguously,
        # 4x faster on CPU than the default layout for the 1/2-resolution map
        self.coarse = [level.contiguous(memory_format=torch.channels_last) for level in levels[1:]]

    def raw(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Unnormalised features at integer pixels ``x``, ``y`` ``(B, P)``, and inverse norms.

        Returns the four scales' parts, each ``(B, dim/4, P)`` channels first (concatenated
        over channels they are the features), and ``(B, 1, P)`` the inverse L2 norms of the
        whole features. The pixels must lie inside the image. (Kept apart and channels first,
        as ``grid_sample`` returns them: copying them into one tensor costs more on CPU than
        everything the callers do with them.)
        """
        px, py = x + self.offset[0], y + self.offset[1]
        index = py * self.width + px
        rows = torch.stack([self.full[b].index_select(0, index[b]) for b in range(len(index))])
        parts = [rows.transpose(1, 2)]
        # upsampling with align_corners=True reads a coarse map at p * (n - 1) / (N - 1),
        # i.e. at the same normalised coordinate p / (N - 1) * 2 - 1 in every map
        scale = torch.tensor([self.width - 1, self.height - 1], device=x.device)
        grid = (torch.stack([px, py], dim=-1) / scale * 2 - 1).to(self.full.dtype)
        for level in self.coarse:
            parts.append(F.grid_sample(level, grid[:, :, None], align_corners=True)[..., 0])
        squared = sum(part.square().sum(1, keepdim=True) for part in parts)
        return parts, squared.sqrt_().clamp_(min=1e-12).reciprocal_()  # type: ignore[union-attr]

    def at(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Normalised features at integer pixels ``x``, ``y`` ``(B, P)`` -> ``(B, P, dim)``.

        The pixels must lie inside the image.
        """
        parts, inverse = self.raw(x, y)
        return (torch.cat(parts, dim=1) * inverse).transpose(1, 2)

    def sample(self, positions: torch.Tensor) -> torch.Tensor:
        """Bilinear samples at ``(B, P, 2)`` (x, y) float pixels -> ``(B, P, dim)``.

        Zeros outside the image, as ``grid_sample(align_corners=True)`` on the full map. Each
        corner's normalisation is folded into its bilinear weight.
        """
        height, width = self.size
        x0, y0 = positions[..., 0].floor(), positions[..., 1].floor()
        fx, fy = positions[..., 0] - x0, positions[..., 1] - y0
        # the four neighbours in one pass: (B, 4, P)
        x = x0.long()[:, None] + torch.tensor([0, 1, 0, 1], device=x0.device)[:, None]
        y = y0.long()[:, None] + torch.tensor([0, 0, 1, 1], device=x0.device)[:, None]
        wx = torch.stack([1 - fx, fx, 1 - fx, fx], dim=1)
        wy = torch.stack([1 - fy, 1 - fy, fy, fy], dim=1)
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        batch, corners, count = x.shape
        parts, inverse = self.raw(
            x.clamp(0, width - 1).reshape(batch, -1), y.clamp(0, height - 1).reshape(batch, -1)
        )
        weights = (wx * wy * inside).view(batch, 1, corners, count) * inverse.view(
            batch, 1, corners, count
        )
        summed = [
            (part.reshape(batch, part.shape[1], corners, count) * weights).sum(2) for part in parts
        ]
        return torch.cat(summed, dim=1).transpose(1, 2)


class SDDH(nn.Module):
    """Sparse deformable descriptor head: one descriptor per keypoint.

    Per keypoint, M offsets are predicted from its 3x3 feature patch, features are sampled there,
    projected and aggregated into one descriptor.
    """

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

    def forward(self, features: FeatureMaps, keypoints: torch.Tensor) -> torch.Tensor:
        """Descriptors ``(B, N, C)`` of ``keypoints (B, N, 2)`` float pixels.

        ``features`` are those of the ``(H, W)`` image the keypoints are in.
        """
        height, width = features.size
        batch, n, _ = keypoints.shape
        k = self.kernel_size
        # 1. the k x k patch whose corner is at trunc(x - k/2 + 1), clamped into the map
        #    (the reference's get_patches: integer keypoint, then that corner)
        corner = (keypoints.long() - k / 2 + 1).long()
        cx = corner[..., 0].clamp(0, max(width - 1 - k, 0))
        cy = corner[..., 1].clamp(0, max(height - 1 - k, 0))
        steps = torch.arange(k, device=keypoints.device)
        ys = (cy[..., None, None] + steps[:, None]).clamp(max=height - 1)  # (B, N, k, 1)
        xs = (cx[..., None, None] + steps[None, :]).clamp(max=width - 1)  # (B, N, 1, k)
        ys, xs = torch.broadcast_tensors(ys, xs)
        patches = features.at(xs.reshape(batch, -1), ys.reshape(batch, -1))  # (B, N*k*k, C)
        channels = patches.shape[-1]
        patches = patches.reshape(batch * n, k, k, channels).permute(0, 3, 1, 2)
        # 2. offsets for the M sample positions, clamped like the dense deformable convs
        limit = max(height, width) / 4.0
        offsets = self.offset_conv(patches).clamp(-limit, limit)  # (B*N, 2M, 1, 1)
        offsets = offsets.view(batch, n, 2, self.positions).transpose(2, 3)  # (B, N, M, 2)
        # 3. bilinear samples at keypoint + offset, then projection and weighted aggregation
        positions = keypoints[:, :, None] + offsets
        sampled = features.sample(positions.reshape(batch, n * self.positions, 2))
        sampled = sampled.view(batch, n, self.positions, channels)
        projected = F.selu(
            sampled @ self.sf_conv.weight[:, :, 0, 0].t(), inplace=True
        )  # (B, N, M, C)
        descriptors = torch.einsum("bnmc,mcd->bnd", projected, self.agg_weights)
        return F.normalize(descriptors, p=2, dim=-1)


# The network ---------------------------------------------------------------------------------
class ALIKED(KeypointModel):
    """ALIKED network and keypoint extraction.

    ``forward(image, image_sizes=None, **options)``: ``image (B, 3, H, W)`` RGB float in [0, 1]
    (any size; the network pads to a multiple of 32 itself, by edge replication), optionally
    ``image_sizes (B, 2)`` (height, width) of the valid region of each image. Returns batched,
    padded ``keypoints (B, N, 2)`` sub-pixel (x, y) pixels, ``scores (B, N)``,
    ``descriptors (B, N, D)`` (L2-normalised, D = 64 or 128), ``mask (B, N)``.
    """

    config_class = ALIKEDConfig

    def __init__(self, config: ALIKEDConfig | None = None, **overrides) -> None:
        """Build an untrained network from ``config`` (or the defaults) and ``overrides``."""
        super().__init__(config, **overrides)
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
            nn.SELU(inplace=True),
            nn.Conv2d(8, 4, 3, padding=1, bias=False),
            nn.SELU(inplace=True),
            nn.Conv2d(4, 4, 3, padding=1, bias=False),
            nn.SELU(inplace=True),
            nn.Conv2d(4, 1, 3, padding=1, bias=False),
        )
        self.desc_head = SDDH(dim, k, m)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # kept on load

    @property
    def projections(self) -> tuple[nn.Module, ...]:
        """The 1x1 convolutions projecting each scale to dim/4 channels."""
        return self.conv1, self.conv2, self.conv3, self.conv4

    @property
    def info(self) -> DetectorInfo:
        """The registry entry of this variant."""
        return INFOS[self.config.model_name]

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Score map and multi-scale aggregation maps of ``(B, 3, H, W)`` images.

        ``(B, 3, H, W)`` -> score map ``(B, H, W)`` in [0, 1] and the four aggregation maps
        ``(B, dim/4, h, w)`` of the padded image at 1, 1/2, 1/8 and 1/32 resolution, from which
        :class:`FeatureMaps` computes the features where they are needed. Runs channels-last
        (weights and activations), about 1.7x faster on CPU than the default layout.
        """
        image = image.contiguous(memory_format=torch.channels_last)
        height, width = image.shape[-2:]
        left, right, top, bottom = self.padding(height, width)
        pads = (left, right, top, bottom)
        x = F.pad(image, pads, mode="replicate") if any(pads) else image
        # encoder at 1, 1/2, 1/8 and 1/32 resolution
        x1 = self.block1(x)
        x2 = self.block2(F.avg_pool2d(x1, 2))
        x3 = self.block3(F.avg_pool2d(x2, 4))
        x4 = self.block4(F.avg_pool2d(x3, 4))
        # aggregation: each scale projected to dim/4 channels
        levels = [
            F.selu(conv(x), inplace=True) for conv, x in zip(self.projections, (x1, x2, x3, x4))
        ]
        # score head on the upsampled concatenation. Its first layer (1x1, no bias) is linear,
        # so it commutes with the bilinear upsampling: apply it per scale, then upsample 8
        # channels instead of dim (the same sum, reassociated)
        first: nn.Conv2d = self.score_head[0]  # type: ignore[assignment]
        weights = first.weight.chunk(4, dim=1)
        head = F.conv2d(levels[0], weights[0])
        for level, weight, factor in zip(levels[1:], weights[1:], (2, 8, 32)):
            head = head + F.interpolate(
                F.conv2d(level, weight), scale_factor=factor, mode="bilinear", align_corners=True
            )
        scores = torch.sigmoid(self.score_head[1:](head))[:, 0]
        return (scores[:, top : top + height, left : left + width], *levels)

    @staticmethod
    def padding(height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) replicate padding to multiples of 32.

        The padding is centred as in the reference.
        """
        pad_h, pad_w = -height % 32, -width % 32
        return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2

    def forward(
        self, image: torch.Tensor, image_sizes: torch.Tensor | None = None, **options
    ) -> dict[str, torch.Tensor]:
        """See the class docstring."""
        conf = self.config.replace(**options) if options else self.config
        if image.ndim != 4 or image.shape[1] != 3:
            raise ConfigError(f"ALIKED expects (B, 3, H, W) images, got {tuple(image.shape)}")
        batch, _, height, width = image.shape
        if batch > 1 and image.device.type == "cpu":
            # One image at a time on CPU: the full-resolution maps of a batch fall out of the
            # caches, and a batch of 4 at 640x480 cost 15% more per image than 4 singles.
            # Each image's keypoints never depend on the others, so the results are the same.
            return ops.concat_padded(
                [
                    self(
                        image[i : i + 1],
                        None if image_sizes is None else image_sizes[i : i + 1],
                        **options,
                    )  # fmt: skip
                    for i in range(batch)
                ]
            )
        radius = conf.nms_radius

        # 1. dense score map and the multi-scale feature maps
        scores, *levels = self.dense(image)
        left, _, top, _ = self.padding(height, width)
        features = FeatureMaps(tuple(levels), (left, top), (height, width))

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
        """Detection threshold per image ``(B,)``, as the reference's DKD chooses it.

        Per image: ``threshold``, or the image's mean score when no NMS maximum inside the border
        passes it (or when ``threshold`` is 0), as the reference's DKD does.
        """
        batch = scores.shape[0]
        means = scores.reshape(batch, -1).mean(1)
        if threshold <= 0:
            return means
        _, _, found = ops.select_keypoints(nms, threshold, border, 1, image_sizes)
        fixed = torch.full_like(means, threshold)
        return torch.where(found.any(1), fixed, means)

    # weights --------------------------------------------------------------------------------
    #: a variant's name loads its bundled weights (from_pretrained("aliked-t16"))
    weight_names = tuple(VARIANTS)

    @classmethod
    def named_options(cls, name: str, overrides: dict) -> dict:
        """The variant ``name`` is the ``model_name`` option (unless given explicitly)."""
        return {"model_name": name, **overrides}

    def default_weights(self):
        """The bundled weights of this variant (BSD-3, no network)."""
        return bundled_weights(self.config.model_name)
