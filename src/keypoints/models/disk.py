"""DISK, a U-Net keypoint detector and descriptor trained with policy gradient, in plain PyTorch.

DISK: Tyszkiewicz, Fua, Trulls, "DISK: Learning local features with policy gradient", NeurIPS 2020.
Reference: cvlab-epfl/disk (Apache-2.0); keypoint selection as kornia's ``kornia.feature.DISK``,
which LightGlue wraps (strict local maxima of the heatmap, the K best above a threshold).

Layer names follow the release (``unet.path_down.*``, ``unet.path_up.*``), so its ``extractor``
state dict loads as it is; the "depth" weights are bundled with the package as safetensors. The
last U-Net layer (80 -> 128 + 1 channels, 5x5, at full resolution) is most of the cost; only its
heatmap channel is computed densely, and the descriptor channels only at the keypoints (the same
arithmetic per pixel), which makes extraction about 3x faster than kornia's on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import ops
from .base import KeypointModel
from .config import Config, check_int, check_max_keypoints, check_range, config_class
from .protocol import DetectorInfo, Preprocessing

__all__ = ["DISKConfig", "DISK", "INFO", "bundled_weights"]

#: The U-Net's input must be a multiple of this (four halvings); the network zero-pads to it.
MULTIPLE = 16
#: Channels of the encoder levels (full, 1/2, 1/4, 1/8 and 1/16 resolution) and of the decoder.
DOWN = (16, 32, 64, 64, 64)
UP = (64, 64, 64)
#: Descriptor size D; the last layer has D + 1 channels, the last one the heatmap.
DESCRIPTOR_DIM = 128
KERNEL_SIZE = 5

#: The registry entry: the "depth" release of cvlab-epfl/disk, bundled.
INFO = DetectorInfo(
    name="disk",
    kind="learned",
    descriptor_dim=DESCRIPTOR_DIM,
    license="Apache-2.0",
    weights="bundled with the package",
    load=lambda: DISK.from_pretrained(),
    available=lambda: True,
    matcher_weights="disk",
    preprocessing=Preprocessing(channels=3, pad_multiple=MULTIPLE),
)


@config_class
class DISKConfig(Config):
    """DISK options (LightGlue's names in brackets).

    ``max_keypoints`` (max_num_keypoints): keep the best ones by score, -1 for all.
    ``threshold`` (detection_threshold): keep heatmap maxima whose score (a logit, any real
    number) is strictly above it. With ``threshold=0`` and ``max_keypoints=K`` (the default,
    K = 2048 as in LightGlue's README) this is kornia's ``DISK(n=K)``. ``nms_radius``: a
    keypoint is strictly larger than every other score in its ``(2r+1) x (2r+1)`` window and
    lies at least ``r`` pixels inside the image. LightGlue's ``nms_window_size`` (odd, 2r + 1)
    is accepted too and converted to the radius.
    """

    aliases = {"detection_threshold": "threshold", "max_num_keypoints": "max_keypoints"}

    max_keypoints: int = 2048
    threshold: float = 0.0
    nms_radius: int = 2

    @classmethod
    def canonical(cls, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` with aliases resolved and ``nms_window_size`` turned into ``nms_radius``."""
        if "nms_window_size" not in kwargs:
            return super().canonical(kwargs)
        kwargs = dict(kwargs)
        size = kwargs.pop("nms_window_size")
        ok = isinstance(size, int) and not isinstance(size, bool) and size >= 3 and size % 2
        check_range("nms_window_size", size, bool(ok), "an odd integer >= 3")
        if "nms_radius" in kwargs and kwargs["nms_radius"] != (size - 1) // 2:
            raise ConfigError(
                f"nms_window_size={size} and nms_radius={kwargs['nms_radius']} disagree; "
                "pass one of them"
            )
        kwargs["nms_radius"] = (size - 1) // 2
        return super().canonical(kwargs)

    def validate(self) -> None:
        """Raise ConfigError unless every option is in range."""
        check_max_keypoints(self.max_keypoints)
        value = self.threshold
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        check_range("threshold", value, ok and math.isfinite(value), "a finite number (a logit)")
        check_int("nms_radius", self.nms_radius, 1, 16)


def bundled_weights():
    """Path (a Traversable) of the bundled DISK "depth" weights (Apache-2.0, LICENSE-DISK)."""
    return resources.files("keypoints") / "weights" / "disk-depth.safetensors"


# The U-Net (reference names: path_down.{i}.{0: pool, 1: block}, path_up.{i}.conv) -----------
class ConvBlock(nn.Sequential):
    """Instance norm, PReLU, then a 5x5 convolution (the first block has no norm and gate).

    Index 2 is the reference's dropout slot (a no-op in the release); the indices keep the
    weight names ``{1: gate, 3: conv}``.
    """

    def __init__(self, c_in: int, c_out: int, gated: bool = True) -> None:
        super().__init__(
            nn.InstanceNorm2d(c_in) if gated else nn.Identity(),
            nn.PReLU(c_in) if gated else nn.Identity(),
            nn.Identity(),
            nn.Conv2d(c_in, c_out, KERNEL_SIZE, padding=KERNEL_SIZE // 2),
        )

    @property
    def conv(self) -> nn.Conv2d:
        """The block's convolution."""
        return self[3]  # type: ignore[return-value]

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The block up to its convolution (normalised and gated input)."""
        return self[1](self[0](x))


class UpBlock(nn.Module):
    """Bilinear 2x upsampling of the coarser map, concatenation with the skip, a ConvBlock."""

    def __init__(self, c_bottom: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvBlock(c_bottom + c_skip, c_out)

    def merge(self, bottom: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``(B, Cb, h, w)`` and ``(B, Cs, 2h, 2w)`` -> their ``(B, Cb + Cs, 2h, 2w)`` input."""
        up = F.interpolate(bottom, scale_factor=2, mode="bilinear", align_corners=False)
        return torch.cat([up, skip], dim=1)

    def forward(self, bottom: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``(B, Cb, h, w)``, ``(B, Cs, 2h, 2w)`` -> ``(B, C_out, 2h, 2w)``."""
        return self.conv(self.merge(bottom, skip))


class UNet(nn.Module):
    """DISK's thin U-Net: five encoder levels, four decoder levels with skips.

    :meth:`forward` stops before the last convolution (see :class:`DISK`), whose weights are
    ``path_up[-1].conv.conv``: descriptor channels first, the heatmap last.
    """

    def __init__(self) -> None:
        super().__init__()
        widths = (3, *DOWN)
        self.path_down = nn.ModuleList(
            nn.Sequential(
                nn.AvgPool2d(2) if i else nn.Identity(), ConvBlock(c_in, c_out, gated=i > 0)
            )
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:]))
        )
        bottoms = (DOWN[-1], *UP)
        skips = DOWN[-2::-1]
        outs = (*UP, DESCRIPTOR_DIM + 1)
        self.path_up = nn.ModuleList(UpBlock(*c) for c in zip(bottoms, skips, outs))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` (H, W multiples of 16) -> the last layer's input ``(B, 80, H, W)``.

        That is the normalised, gated concatenation of the upsampled decoder map and the first
        encoder level.
        """
        levels = []
        x = image
        for block in self.path_down:
            x = block(x)
            levels.append(x)
        levels.pop()  # the bottom level is x itself
        for block in self.path_up[:-1]:
            x = block(x, levels.pop())
        last: UpBlock = self.path_up[-1]  # type: ignore[assignment]
        return last.conv.gate(last.merge(x, levels.pop()))


def _strict_maxima(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B, H, W)`` -> bool mask of the scores larger than all others in their window.

    The window is ``(2r+1) x (2r+1)``; ties are never maxima (as kornia's ``nms2d``). Near the
    border the window is cut at the map's edge; callers keep a border of ``r`` pixels, where
    kornia's maxima never are. The neighbourhood maximum without the centre is taken over four
    max-pooled strips (the rows above and below, the centre row left and right), compared
    exactly, so the mask is identical to a literal comparison.
    """
    height, width = scores.shape[-2:]
    r, k = radius, 2 * radius + 1
    low = float("-inf")
    x = scores[:, None]
    rows = F.max_pool2d(F.pad(x, (r, r, 0, 0), value=low), (1, k), stride=1)  # (B, 1, H, W)
    vertical = F.max_pool2d(F.pad(rows, (0, 0, r, r), value=low), (r, 1), stride=1)
    horizontal = F.max_pool2d(F.pad(x, (r, r, 0, 0), value=low), (1, r), stride=1)
    # vertical[i] is the max over rows i - r .. i - 1 (above), vertical[i + r + 1] below
    neighbours = torch.maximum(
        torch.maximum(vertical[..., :height, :], vertical[..., r + 1 :, :]),
        torch.maximum(horizontal[..., :width], horizontal[..., r + 1 :]),
    )
    return (x > neighbours)[:, 0]


def _conv_one_channel(x: torch.Tensor, conv: nn.Conv2d, channel: int) -> torch.Tensor:
    """One output channel of a same-padded ``conv`` of ``x (B, C, H, W)`` -> ``(B, H, W)``.

    Computed as a matrix product giving one map per kernel tap, then the tap maps shifted and
    summed: a convolution to a single channel is several times slower on CPU (the same sum,
    reassociated).
    """
    weight = conv.weight[channel]  # (C, k, k)
    k = weight.shape[-1]
    r = k // 2
    batch, _, height, width = x.shape
    kernel = weight.permute(1, 2, 0).reshape(k * k, -1)  # (k*k, C), taps row-major
    taps = torch.bmm(kernel.expand(batch, -1, -1), x.flatten(2)).view(batch, k * k, height, width)
    taps = F.pad(taps, (r, r, r, r))
    out = taps[:, 0, :height, :width].clone()
    for tap in range(1, k * k):
        i, j = divmod(tap, k)
        out += taps[:, tap, i : i + height, j : j + width]
    return out + conv.bias[channel] if conv.bias is not None else out


# The network ---------------------------------------------------------------------------------
class DISK(KeypointModel):
    """DISK network and keypoint extraction.

    ``forward(image, image_sizes=None, **options)``: ``image (B, 3, H, W)`` RGB float in [0, 1]
    (any size; the network zero-pads the bottom and right to a multiple of 16, as kornia's
    ``pad_if_not_divisible``), optionally ``image_sizes (B, 2)`` (height, width) of the valid
    region at the top left of each image (the rest is padding, as :attr:`preprocessing` adds);
    no keypoint lies outside it. Returns batched, padded ``keypoints (B, N, 2)`` float32 (x, y)
    integer pixels (centres at integers), ``scores (B, N)`` (the heatmap logits there),
    ``descriptors (B, N, 128)`` (L2-normalised), ``mask (B, N)``. Keypoints are in decreasing
    score order when ``max_keypoints`` cuts, else row-major; padding entries are 0 / False.

    The U-Net's instance norms see the whole padded input, so an image gives kornia's numbers
    when it is padded to the next multiple of 16 only (as :attr:`preprocessing` does); images
    smaller than 32 pixels, which kornia cannot run, are padded to 32.
    """

    config_class = DISKConfig

    def __init__(self, config: DISKConfig | None = None, **overrides) -> None:
        """Build an untrained network from ``config`` (or the defaults) and ``overrides``."""
        super().__init__(config, **overrides)
        self.unet = UNet()

    @property
    def info(self) -> DetectorInfo:
        """The registry entry."""
        return INFO

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last U-Net convolution: descriptor channels, then the heatmap channel."""
        return self.unet.path_up[-1].conv.conv  # type: ignore[union-attr,return-value]

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Heatmap and the descriptor head's input of ``(B, 3, H, W)`` images.

        Returns the heatmap logits ``(B, H, W)`` and the last layer's input ``(B, 80, H', W')``
        of the image zero-padded at the bottom and right to ``H', W'``, multiples of 16 (and at
        least 32).
        """
        height, width = image.shape[-2:]
        # at least 2 * 16: the instance norms need more than one pixel at 1/16 resolution
        pads = tuple(max(2 * MULTIPLE, n + -n % MULTIPLE) - n for n in (width, height))
        pads = (0, pads[0], 0, pads[1])
        x = F.pad(image, pads) if any(pads) else image
        features = self.unet(x)
        heatmap = _conv_one_channel(features, self.last_conv, -1)
        return heatmap[:, :height, :width], features

    def describe(self, features: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """Descriptors ``(B, N, 128)`` (L2-normalised) at ``(B, N, 2)`` integer (x, y) pixels.

        The last convolution's descriptor channels, evaluated at those pixels only: each
        keypoint's 5x5 patch of ``features (B, C, H, W)`` (zeros outside) times the weights.
        """
        conv = self.last_conv
        weight = conv.weight[:-1]  # (D, C, k, k)
        bias = None if conv.bias is None else conv.bias[:-1]
        batch, channels, height, width = features.shape
        n, k = keypoints.shape[1], weight.shape[-1]
        steps = torch.arange(k, device=keypoints.device) - k // 2
        x = keypoints[..., 0].long()[..., None, None] + steps  # (B, N, 1, k)
        y = keypoints[..., 1].long()[..., None, None] + steps[:, None]  # (B, N, k, 1)
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)  # (B, N, k, k)
        index = (y.clamp(0, height - 1) * width + x.clamp(0, width - 1)).reshape(batch, 1, -1)
        patches = features.flatten(2).gather(2, index.expand(-1, channels, -1))  # (B, C, N*k*k)
        patches = patches.view(batch, channels, n, k * k) * inside.view(batch, 1, n, k * k)
        patches = patches.transpose(1, 2).reshape(batch * n, channels * k * k)
        out = F.linear(patches, weight.reshape(weight.shape[0], -1), bias)
        return F.normalize(out.view(batch, n, weight.shape[0]), p=2, dim=-1)

    def forward(
        self, image: torch.Tensor, image_sizes: torch.Tensor | None = None, **options
    ) -> dict[str, torch.Tensor]:
        """See the class docstring."""
        conf = self.config.replace(**options) if options else self.config
        if image.ndim != 4 or image.shape[1] != 3:
            raise ConfigError(f"DISK expects (B, 3, H, W) images, got {tuple(image.shape)}")
        radius = conf.nms_radius

        # 1. heatmap (cropped to the input) and the last layer's input
        heatmap, features = self.dense(image)

        # 2. strict maxima above the threshold, at least r pixels inside each valid region,
        #    the best max_keypoints of them (ties in row-major order, as kornia)
        maxima = _strict_maxima(heatmap, radius)
        candidates = heatmap.masked_fill(~maxima, float("-inf"))
        keypoints, scores, mask = ops.select_keypoints(
            candidates, conf.threshold, radius, conf.max_keypoints, image_sizes
        )
        scores = scores.masked_fill(~mask, 0.0)  # padding entries read -inf * 0

        # 3. descriptors at those pixels
        descriptors = self.describe(features, keypoints)
        return {
            "keypoints": keypoints,
            "scores": scores,
            "descriptors": descriptors * mask[..., None],
            "mask": mask,
        }

    # weights --------------------------------------------------------------------------------
    weight_names = ("disk",)

    def default_weights(self):
        """The bundled "depth" weights (Apache-2.0, no network).

        Other sources: the release ``.pth`` (``{"extractor": ...}``), a flat state dict or
        ``.safetensors`` with the same key names, or a folder in the Hub layout.
        """
        return bundled_weights()
