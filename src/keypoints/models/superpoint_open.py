"""SuperPoint retrained by Rémi Pautrat and Paul-Edouard Sarlin (rpautrat/SuperPoint, MIT).

A commercially usable SuperPoint. Same detector and descriptor design as Magic Leap's
(DeTone et al. 2018), with BatchNorm after every convolution's ReLU (VGG blocks), descriptors
sampled at cell centres, and the weights ``weights/superpoint_v6_from_tf.pth`` downloaded from that
repository on first use and cached (``keypoints.models.weights.cache_dir``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import ops
from .base import KeypointModel
from .config import Config, check_int, check_max_keypoints, check_unit, config_class
from .protocol import DetectorInfo, Preprocessing
from .weights import cache_dir, download_url

__all__ = ["SuperPointOpenConfig", "SuperPointOpen", "WEIGHTS_URL", "INFO"]

WEIGHTS_URL = "https://github.com/rpautrat/SuperPoint/raw/master/weights/superpoint_v6_from_tf.pth"
WEIGHTS_FILE = "superpoint_v6_from_tf.pth"

#: The registry entry: downloaded once from rpautrat/SuperPoint, then cached.
INFO = DetectorInfo(
    name="superpoint-open",
    kind="learned",
    descriptor_dim=256,
    license="MIT",
    weights=f"{WEIGHTS_URL} (downloaded on first use)",
    load=lambda: SuperPointOpen.from_pretrained(),
    available=lambda: (cache_dir() / WEIGHTS_FILE).is_file(),
    preprocessing=Preprocessing(channels=1, pad_multiple=8),
)


@config_class
class SuperPointOpenConfig(Config):
    """Options of the MIT SuperPoint.

    ``max_keypoints`` (-1: all), ``threshold`` (0.005), ``nms_radius`` (4), ``border`` (4 pixels
    removed on every side).
    """

    max_keypoints: int = -1
    threshold: float = 0.005
    nms_radius: int = 4
    border: int = 4
    descriptor_dim: int = 256
    channels: tuple[int, ...] = (64, 64, 128, 128, 256)

    aliases = {"detection_threshold": "threshold", "max_num_keypoints": "max_keypoints"}

    def validate(self) -> None:
        """Make ``channels`` a tuple of ints; raise ConfigError on an out-of-range option."""
        self.channels = tuple(int(c) for c in self.channels)
        check_max_keypoints(self.max_keypoints)
        check_unit("threshold", self.threshold)
        check_int("nms_radius", self.nms_radius, 0, 64)
        check_int("border", self.border, 0, 1024)

    @property
    def cell_size(self) -> int:
        """Pixels per descriptor cell: 2 ** (number of pooling layers)."""
        return 2 ** (len(self.channels) - 2)


class VGGBlock(nn.Sequential):
    """conv -> ReLU (optional) -> BatchNorm(eps=1e-3), with the reference's key names."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=(kernel_size - 1) // 2)
        self.activation = nn.ReLU() if relu else nn.Identity()
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)


class SuperPointOpen(KeypointModel):
    """The MIT SuperPoint network and keypoint extraction.

    ``forward`` as :class:`keypoints.SuperPoint` (grayscale ``(B, 1, H, W)`` input, padded to a
    multiple of 8 by the pipeline).
    """

    config_class = SuperPointOpenConfig

    @property
    def info(self) -> DetectorInfo:
        """The registry entry (``superpoint-open``)."""
        return INFO

    def __init__(self, config: SuperPointOpenConfig | None = None, **overrides) -> None:
        """Build an untrained network from ``config`` (or the defaults) and ``overrides``."""
        super().__init__(config, **overrides)
        channels = [1, *self.config.channels[:-1]]
        blocks = []
        for i, c in enumerate(channels[1:], 1):
            layers: list[nn.Module] = [VGGBlock(channels[i - 1], c, 3), VGGBlock(c, c, 3)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2, 2))
            blocks.append(nn.Sequential(*layers))
        self.backbone = nn.Sequential(*blocks)
        c, cell = self.config.channels[-1], self.config.cell_size
        self.detector = nn.Sequential(
            VGGBlock(channels[-1], c, 3), VGGBlock(c, cell * cell + 1, 1, relu=False)
        )
        self.descriptor = nn.Sequential(
            VGGBlock(channels[-1], c, 3), VGGBlock(c, self.config.descriptor_dim, 1, relu=False)
        )

    dense_output_names = ("heatmap", "descriptors")
    #: ``precision="fast"``: the int8 graph (onnxruntime, VNNI); see the docs' Speed page
    fast_precision = "int8"

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap and L2-normalised dense descriptors of ``(B, 1, H, W)`` images.

        ``(B, 1, H, W)`` -> heatmap ``(B, H, W)`` (softmax over each cell and the dustbin) and
        L2-normalised dense descriptors ``(B, D, H/8, W/8)``.
        """
        features = self.backbone(image)
        heat = ops.cells_to_heatmap(self.detector(features), self.config.cell_size)
        return heat, F.normalize(self.descriptor(features), p=2, dim=1)

    def forward(self, image, image_sizes=None, **options) -> dict[str, torch.Tensor]:
        """See :class:`keypoints.SuperPoint`."""
        conf = self.config.replace(**options) if options else self.config
        if image.ndim != 4 or image.shape[1] != 1:
            raise ConfigError(f"SuperPoint expects (B, 1, H, W) images, got {tuple(image.shape)}")
        cell = conf.cell_size

        # 1. dense maps (torch or onnxruntime), 2. NMS of the heatmap
        heat, dense = self.dense(image)
        heat = self.nms(heat, conf.nms_radius)

        # 3. threshold, border and top-k
        keypoints, scores, mask = ops.select_keypoints(
            heat, conf.threshold, conf.border, conf.max_keypoints, image_sizes
        )

        # 4. descriptors at cell-centre convention: pixel x sits at (x + 0.5) / cell - 0.5
        desc = ops.sample_map(dense, (keypoints + 0.5) / cell - 0.5)
        desc = F.normalize(desc, p=2, dim=-1) * mask[..., None]
        return {"keypoints": keypoints, "scores": scores, "descriptors": desc, "mask": mask}

    weight_names = ("superpoint-open",)

    def default_weights(self):
        """The MIT weights of rpautrat/SuperPoint, downloaded once into keypoints' cache."""
        return download_url(
            WEIGHTS_URL,
            WEIGHTS_FILE,
            hint="pass a local copy of superpoint_v6_from_tf.pth with --model PATH",
        )
