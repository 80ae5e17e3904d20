"""SuperPoint, a self-supervised keypoint detector and descriptor, in plain PyTorch.

SuperPoint: DeTone, Malisiewicz, Rabinovich, "SuperPoint: Self-Supervised Interest Point Detection
and Description", CVPRW 2018.

Layer names follow Magic Leap's ``superpoint_v1.pth`` (``conv1a`` ... ``convPb``, ``convDb``);
transformers' names (``encoder.conv_blocks.0.conv_a`` ...) are mapped at load and save time. Numbers
match transformers' ``SuperPointForKeypointDetection`` on the same weights.
"""

from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import DEFAULT_BACKEND, DEFAULT_PRECISION
from ..errors import ConfigError
from . import ops
from .base import KeypointModel, load_checked
from .config import Config, check_int, check_max_keypoints, check_range, check_unit, config_class
from .protocol import DetectorInfo, Preprocessing
from .weights import hub_cached, load_state_dict, resolve_checkpoint

__all__ = [
    "SuperPointConfig",
    "SuperPoint",
    "INFO",
    "convert_state_dict",
    "to_transformers_state_dict",
]

#: Hub repository of the released Magic Leap weights (noncommercial license; never bundled).
DEFAULT_SOURCE = "magic-leap-community/superpoint"

#: The registry entry: Magic Leap's released weights, from the Hugging Face Hub.
INFO = DetectorInfo(
    name="superpoint",
    kind="learned",
    descriptor_dim=256,
    license="Magic Leap noncommercial research only",
    weights=f"Hugging Face Hub: {DEFAULT_SOURCE} (downloaded on first use)",
    load=lambda: SuperPoint.from_pretrained(DEFAULT_SOURCE),
    available=lambda: hub_cached(DEFAULT_SOURCE),
    matcher_weights="superpoint",
    preprocessing=Preprocessing(channels=1, pad_multiple=8),
)


@config_class
class SuperPointConfig(Config):
    """SuperPoint options, with the names and defaults of transformers' ``SuperPointConfig``.

    Architecture: ``encoder_hidden_sizes`` (channels of the conv blocks; each block but the last
    halves the resolution), ``decoder_hidden_size``, ``keypoint_decoder_dim`` (cells + dustbin,
    65 for 8x8 cells), ``descriptor_decoder_dim``. Detection: ``keypoint_threshold`` (alias
    ``threshold``), ``max_keypoints`` (-1: all), ``nms_radius``, ``border_removal_distance``
    (alias ``border``).
    """

    model_type = "superpoint"
    aliases = {"threshold": "keypoint_threshold", "border": "border_removal_distance"}

    encoder_hidden_sizes: tuple[int, ...] = (64, 64, 128, 128)
    decoder_hidden_size: int = 256
    keypoint_decoder_dim: int = 65
    descriptor_decoder_dim: int = 256
    keypoint_threshold: float = 0.005
    max_keypoints: int = -1
    nms_radius: int = 4
    border_removal_distance: int = 4

    def validate(self) -> None:
        """Make ``encoder_hidden_sizes`` a tuple of ints; raise ConfigError on a bad option."""
        self.encoder_hidden_sizes = tuple(int(v) for v in self.encoder_hidden_sizes)
        check_range(
            "encoder_hidden_sizes",
            self.encoder_hidden_sizes,
            len(self.encoder_hidden_sizes) >= 2 and min(self.encoder_hidden_sizes) > 0,
            "two or more positive channel counts",
        )
        cell = self.cell_size
        check_range(
            "keypoint_decoder_dim",
            self.keypoint_decoder_dim,
            self.keypoint_decoder_dim == cell * cell + 1,
            f"{cell * cell + 1} (one per pixel of a {cell}x{cell} cell, plus the dustbin)",
        )
        for name in ("decoder_hidden_size", "descriptor_decoder_dim"):
            check_range(name, getattr(self, name), getattr(self, name) > 0, "a positive integer")
        check_unit("keypoint_threshold", self.keypoint_threshold)
        check_max_keypoints(self.max_keypoints)
        check_int("nms_radius", self.nms_radius, 0, 64)
        check_int("border_removal_distance", self.border_removal_distance, 0, 1024)

    @property
    def cell_size(self) -> int:
        """Pixels per descriptor cell: 2 ** (number of pooling layers)."""
        return 2 ** (len(self.encoder_hidden_sizes) - 1)


# Key maps -----------------------------------------------------------------------------------
_HF_TO_NATIVE = [
    (re.compile(r"^encoder\.conv_blocks\.(\d+)\.conv_([ab])\."), None),
    (re.compile(r"^keypoint_decoder\.conv_score_a\."), "convPa."),
    (re.compile(r"^keypoint_decoder\.conv_score_b\."), "convPb."),
    (re.compile(r"^descriptor_decoder\.conv_descriptor_a\."), "convDa."),
    (re.compile(r"^descriptor_decoder\.conv_descriptor_b\."), "convDb."),
]
_PREFIXES = ("module.", "superpoint.", "model.", "extractor.")


def _native_key(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    for pattern, repl in _HF_TO_NATIVE:
        m = pattern.match(key)
        if m:
            new = f"conv{int(m.group(1)) + 1}{m.group(2)}." if repl is None else repl
            return new + key[m.end() :]
    return key


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a SuperPoint state dict in transformers' or Magic Leap's key naming to ours.

    The keys may be under a ``module.``/``superpoint.`` prefix; ours are the Magic Leap names.
    """
    return {_native_key(k): v for k, v in state.items()}


def to_transformers_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (Magic Leap) key names -> transformers' ``SuperPointForKeypointDetection`` names."""
    heads = {
        "convPa": "keypoint_decoder.conv_score_a",
        "convPb": "keypoint_decoder.conv_score_b",
        "convDa": "descriptor_decoder.conv_descriptor_a",
        "convDb": "descriptor_decoder.conv_descriptor_b",
    }
    out = {}
    for key, value in state.items():
        layer, param = key.split(".", 1)
        m = re.fullmatch(r"conv(\d+)([ab])", layer)
        name = f"encoder.conv_blocks.{int(m.group(1)) - 1}.conv_{m.group(2)}" if m else heads[layer]
        out[f"{name}.{param}"] = value
    return out


# The network --------------------------------------------------------------------------------
class SuperPoint(KeypointModel):
    """SuperPoint network and keypoint extraction.

    ``forward(image, image_sizes=None, **options)`` takes
    ``image (B, 1, H, W)`` float in [0, 1] (grayscale), ``H`` and ``W`` multiples of the cell
    size (8), and optionally ``image_sizes (B, 2)`` int (height, width) of the valid
    (unpadded) region of each image.
    It returns a dict of batched, padded outputs: ``keypoints (B, N, 2)`` float32 (x, y) pixel
    coordinates in ``image``, ``scores (B, N)``, ``descriptors (B, N, D)``, ``mask (B, N)`` bool.
    ``options`` override the config for this call (``max_keypoints``, ``threshold``,
    ``nms_radius``, ``border``).
    """

    config_class = SuperPointConfig

    @property
    def info(self) -> DetectorInfo:
        """The registry entry (``superpoint``)."""
        return INFO

    def __init__(self, config: SuperPointConfig | None = None, **overrides) -> None:
        """Build an untrained network from ``config`` (or the defaults) and ``overrides``."""
        super().__init__(config, **overrides)
        sizes = (1, *self.config.encoder_hidden_sizes)
        for i in range(len(sizes) - 1):
            setattr(self, f"conv{i + 1}a", nn.Conv2d(sizes[i], sizes[i + 1], 3, padding=1))
            setattr(self, f"conv{i + 1}b", nn.Conv2d(sizes[i + 1], sizes[i + 1], 3, padding=1))
        c, hidden = sizes[-1], self.config.decoder_hidden_size
        self.convPa = nn.Conv2d(c, hidden, 3, padding=1)
        self.convPb = nn.Conv2d(hidden, self.config.keypoint_decoder_dim, 1)
        self.convDa = nn.Conv2d(c, hidden, 3, padding=1)
        self.convDb = nn.Conv2d(hidden, self.config.descriptor_decoder_dim, 1)
        self.num_blocks = len(sizes) - 1

    # dense maps ---------------------------------------------------------------------------
    def encode_stages(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The output of each encoder block (after its pooling) for ``(B, 1, H, W)`` images.

        ``(B, 1, H, W)`` -> ``(B, 64, H/2, W/2)``, ..., ``(B, C, H/8, W/8)``.
        """
        stages, x = [], image
        for i in range(1, self.num_blocks + 1):
            x = F.relu(getattr(self, f"conv{i}a")(x))
            x = F.relu(getattr(self, f"conv{i}b")(x))
            if i < self.num_blocks:
                x = F.max_pool2d(x, 2, 2)
            stages.append(x)
        return stages

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> encoder features ``(B, C, H/8, W/8)``."""
        return self.encode_stages(image)[-1]

    def heatmap(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features -> ``(B, H, W)`` keypoint probabilities (softmax, dustbin dropped)."""
        logits = self.convPb(F.relu(self.convPa(features)))
        return ops.cells_to_heatmap(logits, self.config.cell_size)

    def dense_descriptors(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features -> ``(B, D, H/8, W/8)`` L2-normalised descriptors."""
        return F.normalize(self.convDb(F.relu(self.convDa(features))), p=2, dim=1)

    dense_output_names = ("heatmap", "descriptors")
    #: ``precision="fast"``: the int8 graph (onnxruntime, VNNI); see the docs' Speed page
    fast_precision = "int8"

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, H, W)`` -> heatmap ``(B, H, W)`` and dense descriptors ``(B, D, H/8, W/8)``."""
        features = self.encode(image)
        return self.heatmap(features), self.dense_descriptors(features)

    # keypoints ----------------------------------------------------------------------------
    def forward(
        self, image: torch.Tensor, image_sizes: torch.Tensor | None = None, **options
    ) -> dict[str, torch.Tensor]:
        """See the class docstring."""
        if image.ndim != 4 or image.shape[1] != 1:
            raise ConfigError(f"SuperPoint expects (B, 1, H, W) images, got {tuple(image.shape)}")
        # 1. dense maps (encoder and both heads; torch or onnxruntime)
        heat, dense = self.dense(image)
        return self.keypoints_from_maps(heat, dense, image_sizes, **options)

    def keypoints_from_maps(
        self,
        heat: torch.Tensor,
        dense: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
        **options,
    ) -> dict[str, torch.Tensor]:
        """Keypoints of a heatmap ``(B, H, W)``, with descriptors from the dense map.

        The descriptors are sampled from the dense descriptors ``(B, D, H/8, W/8)``; returns what
        :meth:`forward` returns.
        """
        conf = self.config.replace(**options) if options else self.config
        # 2. NMS of the heatmap
        heat = self.nms(heat, conf.nms_radius)

        # 3. threshold, border and top-k, batched
        keypoints, scores, mask = ops.select_keypoints(
            heat, conf.keypoint_threshold, conf.border_removal_distance, conf.max_keypoints,
            image_sizes,
        )  # fmt: skip

        # 4. descriptors sampled at the keypoints (padding entries zeroed)
        descriptors = ops.sample_descriptors(keypoints, dense, self.config.cell_size)
        descriptors = descriptors * mask[..., None]
        return {"keypoints": keypoints, "scores": scores, "descriptors": descriptors, "mask": mask}

    # weights ------------------------------------------------------------------------------
    def load_weights(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load a state dict in Magic Leap's or transformers' naming.

        Missing keys (e.g. a checkpoint without the detector head ``convPa``/``convPb``) raise
        :class:`WeightsError` naming them, unless ``strict=False`` (they then keep their random
        initialisation, with a warning). Unexpected keys raise likewise; wrong shapes always do.
        """
        load_checked(self, convert_state_dict(state), strict)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike = DEFAULT_SOURCE,
        *,
        strict: bool = True,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        backend: str = DEFAULT_BACKEND,
        precision: str = DEFAULT_PRECISION,
        **overrides,
    ):
        """Load SuperPoint from a Hub id, a Hub-layout folder or a checkpoint file.

        Sources: a Hub id (cached by huggingface_hub; ``HF_HUB_OFFLINE`` respected), a Hub-layout
        folder, a Magic Leap ``superpoint_v1.pth`` or a ``.safetensors`` file (either key naming).
        Keyword ``overrides`` change config fields (``max_keypoints=300``). ``backend`` runs the
        dense network with torch or onnxruntime (see ``set_backend``).
        """
        ckpt = resolve_checkpoint(
            source,
            revision=revision,
            cache_dir=cache_dir,
            hint="pass a local checkpoint path (e.g. --model /path/to/superpoint_v1.pth)",
        )
        config = cls.config_class.from_dict(ckpt.config or {}, **overrides)
        model = cls(config)
        return model.finish_loading(load_state_dict(ckpt.weights_file), strict, backend, precision)
