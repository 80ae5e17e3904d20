"""The transformers-compatible LightGlue: its config, image processor and matching model.

``LightGlueConfig``, ``LightGlueImageProcessor`` and ``LightGlueForKeypointMatching``, a facade over
the core matcher (:class:`keypoints.models.lightglue.LightGlue`) and the SuperPoint facade, with
transformers' parameter names, inputs and outputs. cvg's checkpoints load natively through
:meth:`keypoints.models.lightglue.LightGlue.from_pretrained` and :func:`keypoints.match`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, ImageError
from ..image import to_array
from ..io import atomic_write
from ..models.base import load_checked
from ..models.config import Config, check_unit, config_class
from ..models.lightglue import CVG_FEATURES, LightGlue, LightGlueMatcherConfig, is_cvg_state_dict
from ..models.superpoint import DEFAULT_SOURCE as SUPERPOINT_SOURCE
from ..models.superpoint import convert_state_dict, to_transformers_state_dict
from ..models.weights import load_state_dict, resolve_checkpoint
from .common import BatchFeature, Facade, ModelOutput, read_config, write_json
from .superpoint import SuperPointConfig, SuperPointForKeypointDetection, SuperPointImageProcessor

__all__ = [
    "LightGlueConfig",
    "LightGlueForKeypointMatching",
    "LightGlueImageProcessor",
    "LightGlueKeypointMatchingOutput",
]

_DETECTOR = "keypoint_detector."


@config_class
class LightGlueConfig(Config):
    """transformers' ``LightGlueConfig`` fields and defaults.

    ``keypoint_detector_config``: the SuperPoint config as a dict (default: SuperPoint's defaults).
    Grouped-query attention (``num_key_value_heads`` other than ``num_attention_heads``),
    activations other than GELU and attention without bias are not used by any released LightGlue
    and are refused.
    """

    model_type = "lightglue"

    keypoint_detector_config: dict | None = None
    descriptor_dim: int = 256
    num_hidden_layers: int = 9
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    depth_confidence: float = 0.95
    width_confidence: float = 0.99
    filter_threshold: float = 0.1
    initializer_range: float = 0.02
    hidden_act: str = "gelu"
    attention_dropout: float = 0.0
    attention_bias: bool = True

    def validate(self) -> None:
        """Make ``keypoint_detector_config`` a dict and refuse unsupported settings."""
        if self.keypoint_detector_config is not None and not isinstance(
            self.keypoint_detector_config, dict
        ):
            self.keypoint_detector_config = dict(self.keypoint_detector_config.to_dict())
        if self.num_key_value_heads not in (None, self.num_attention_heads):
            raise ConfigError("num_key_value_heads must equal num_attention_heads")
        if self.hidden_act != "gelu" or not self.attention_bias:
            raise ConfigError("only hidden_act='gelu' with attention_bias=True is supported")
        check_unit("filter_threshold", self.filter_threshold)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **overrides) -> LightGlueConfig:
        """Read ``config.json`` from a Hub id or Hub-layout folder, then apply ``overrides``."""
        ckpt = read_config(source, overrides)
        return cls.from_dict(ckpt.config or {}, **overrides)

    @property
    def add_scale_ori(self) -> bool:
        """False: transformers' LightGlue reads keypoint positions only."""
        return False

    @property
    def detector_config(self) -> SuperPointConfig:
        """The keypoint detector's config."""
        return SuperPointConfig.from_dict(self.keypoint_detector_config or {})

    @property
    def matcher_config(self) -> LightGlueMatcherConfig:
        """The core matcher's config (:class:`keypoints.models.lightglue.LightGlueMatcher`)."""
        return LightGlueMatcherConfig(
            input_dim=self.detector_config.descriptor_decoder_dim,
            descriptor_dim=self.descriptor_dim,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            depth_confidence=self.depth_confidence,
            width_confidence=self.width_confidence,
            filter_threshold=self.filter_threshold,
        )


@dataclass
class LightGlueKeypointMatchingOutput(ModelOutput):
    """transformers' output of :class:`LightGlueForKeypointMatching`.

    ``matches (B, 2, N)`` (index into the other image, -1: none), ``matching_scores (B, 2, N)``,
    ``keypoints (B, 2, N, 2)`` relative (x, y), ``prune (B, 2, N)`` (layers each keypoint went
    through), ``mask (B, 2, N)`` int32.
    """

    loss: torch.Tensor | None = None
    matches: torch.Tensor | None = None
    matching_scores: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None
    prune: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class LightGlueForKeypointMatching(Facade):
    """LightGlue on image pairs, with transformers' inputs and outputs.

    ``forward(pixel_values)`` with ``pixel_values (B, 2, C, H, W)`` detects keypoints with
    SuperPoint on all 2B images, matches each pair, and returns
    :class:`LightGlueKeypointMatchingOutput`.

    A facade over the core matcher (``.matcher``, a :class:`keypoints.models.lightglue.LightGlue`
    for :func:`keypoints.match`) and the SuperPoint facade (``.keypoint_detector``). Parameters have
    transformers' names (``keypoint_detector.*`` for SuperPoint), so its state dicts load as they
    are.
    """

    core: LightGlue

    def __init__(self, config: LightGlueConfig | None = None, **overrides) -> None:
        """Build the matcher and its SuperPoint detector from ``config`` and ``overrides``."""
        config = config or LightGlueConfig()
        config = config.replace(**overrides) if overrides else config
        super().__init__(LightGlue(config.matcher_config))
        self.config = config
        self.keypoint_detector = SuperPointForKeypointDetection(config.detector_config)

    @property
    def matcher(self) -> LightGlue:
        """The core matcher (sharing these weights).

        Pass it, or this model, as ``matcher=`` to :func:`keypoints.match`.
        """
        self._sync_options()
        return self.core

    def _sync_options(self) -> None:
        """The core matcher takes the options of ``self.config`` (which users may change)."""
        c, m = self.config, self.core.config
        names = ("depth_confidence", "width_confidence", "filter_threshold")
        if any(getattr(c, n) != getattr(m, n) for n in names):
            self.core.config = m.replace(**{n: getattr(c, n) for n in names})

    def load_weights(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load a state dict with transformers' key names.

        The detector's part may also use Magic Leap's; problems name the keys
        (:func:`~keypoints.models.base.load_checked`).
        """
        detector = {k[len(_DETECTOR) :]: v for k, v in state.items() if k.startswith(_DETECTOR)}
        merged = {k: v for k, v in state.items() if not k.startswith(_DETECTOR)}
        merged.update({_DETECTOR + k: v for k, v in convert_state_dict(detector).items()})
        load_checked(self, merged, strict)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, *, strict: bool = True,
                        revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                        detector: str | os.PathLike = SUPERPOINT_SOURCE,
                        **overrides) -> LightGlueForKeypointMatching:  # fmt: skip
        """Load from a Hub id, a Hub-layout folder or cvg's original SuperPoint checkpoint.

        Sources: a Hub id (e.g. ``ETH-CVG/lightglue_superpoint``; cached by huggingface_hub,
        ``HF_HUB_OFFLINE`` respected), a folder in the Hub layout (``config.json`` and
        ``model.safetensors`` with transformers' key names), or cvg's original SuperPoint checkpoint
        (``"superpoint"`` downloads ``superpoint_lightglue.pth`` once, or its path): its keys are
        mapped, and as it holds no detector, SuperPoint comes from ``detector`` (a Hub id or path)
        with the settings transformers' conversion uses (2048 keypoints, threshold 0.0005). Keyword
        ``overrides`` change config fields (``depth_confidence=-1``). Returns the model in eval
        mode.
        """
        text = os.fspath(source)
        if text in CVG_FEATURES or (
            os.path.isfile(text) and is_cvg_state_dict(load_state_dict(text))
        ):
            return cls._from_cvg(text, detector, strict, **overrides)
        ckpt = resolve_checkpoint(source, revision=revision, cache_dir=cache_dir,
                                  hint="pass a local Hub-layout folder")  # fmt: skip
        config = LightGlueConfig.from_dict(ckpt.config or {}, **overrides)
        model = cls(config)
        model.load_weights(load_state_dict(ckpt.weights_file), strict=strict)  # type: ignore[arg-type]
        return model.eval()

    @classmethod
    def _from_cvg(cls, source: str, detector, strict: bool, **overrides):
        """Cvg's SuperPoint LightGlue (converted by LightGlue.from_pretrained) + SuperPoint."""
        matcher = LightGlue.from_pretrained(source)
        if matcher.config.input_dim != 256 or matcher.config.add_scale_ori:
            raise ConfigError(
                f"'{source}' was trained on other features than SuperPoint's; "
                "LightGlueForKeypointMatching pairs LightGlue with SuperPoint: use "
                "keypoints.match(..., method='lightglue') for other detectors"
            )
        settings = {"max_keypoints": 2048, "keypoint_threshold": 0.0005}
        config = LightGlueConfig(keypoint_detector_config=settings).replace(**overrides)
        model = cls(config)
        superpoint = SuperPointForKeypointDetection.from_pretrained(detector, strict=strict)
        state = {_DETECTOR + k: v for k, v in superpoint.state_dict().items()}
        model.load_weights({**state, **matcher.state_dict()}, strict=strict)
        return model.eval()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` with transformers' key names.

        They are loadable by transformers'
        ``LightGlueForKeypointMatching.from_pretrained(directory)``.
        """
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        detector = {k[len(_DETECTOR) :]: v for k, v in state.items() if k.startswith(_DETECTOR)}
        tensors = {k: v for k, v in state.items() if not k.startswith(_DETECTOR)}
        tensors.update({_DETECTOR + k: v for k, v in to_transformers_state_dict(detector).items()})
        data = {**self.config.to_dict(), "model_type": "lightglue",
                "architectures": ["LightGlueForKeypointMatching"]}  # fmt: skip
        data["keypoint_detector_config"] = {
            **self.config.detector_config.to_dict(),
            "model_type": "superpoint",
        }
        write_json(os.path.join(directory, "config.json"), data)
        atomic_write(os.path.join(directory, "model.safetensors"),
                     lambda p: save_file(tensors, p, metadata={"format": "pt"}))  # fmt: skip

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        **kwargs,
    ) -> LightGlueKeypointMatchingOutput:
        """Transformers' forward; see the class docstring."""
        if labels is not None:
            raise ConfigError("LightGlue is not trainable: no labels")
        if kwargs:
            raise ConfigError(f"unexpected model input '{next(iter(kwargs))}'")
        if (
            not isinstance(pixel_values, torch.Tensor)
            or pixel_values.ndim != 5
            or (pixel_values.shape[1] != 2)
        ):
            shape = tuple(getattr(pixel_values, "shape", ()))
            raise ImageError(f"pixel_values must be (B, 2, C, H, W) image pairs, got {shape}")
        batch, _, channels, height, width = pixel_values.shape
        with torch.no_grad():
            # 1. SuperPoint on all 2B images, keypoints back to pixels as transformers does
            detections = self.keypoint_detector(pixel_values.reshape(-1, channels, height, width))
            n = detections.keypoints.shape[1]
            keypoints = detections.keypoints.reshape(batch, 2, n, 2).to(pixel_values)
            absolute = keypoints.clone()
            absolute[..., 0] = absolute[..., 0] * width
            absolute[..., 1] = absolute[..., 1] * height
            dim = detections.descriptors.shape[-1]
            descriptors = detections.descriptors.reshape(batch, 2, n, dim).to(pixel_values)
            mask = detections.mask.reshape(batch, 2, n)
            # 2. the core matcher, both images of a pair at the processed size
            sizes = torch.tensor([width, height], device=pixel_values.device).expand(batch, 2, 2)
            matches, scores, prune = self.matcher(absolute, descriptors, sizes, mask.bool())
        return LightGlueKeypointMatchingOutput(
            keypoints=keypoints, mask=mask, matches=matches, matching_scores=scores, prune=prune
        )


# Processor --------------------------------------------------------------------------------------
def _pairs(images) -> list:
    """A pair ``[a, b]`` or a list of pairs ``[[a, b], ...]`` -> the flat list a, b, a, b, ..."""

    def is_image(x) -> bool:
        return not isinstance(x, (list, tuple))

    if isinstance(images, (list, tuple)):
        if len(images) == 2 and all(is_image(x) for x in images):
            return list(images)
        if images and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(is_image(x) for x in p)
            for p in images
        ):
            return [x for p in images for x in p]
    raise ImageError("images must be a pair [image0, image1] or a list of pairs [[a, b], ...]")


class LightGlueImageProcessor(SuperPointImageProcessor):
    """transformers' ``LightGlueImageProcessor``: the SuperPoint preprocessing on image pairs.

    The preprocessing is resize to 480x640, rescale, NTSC grayscale; the output is
    ``pixel_values (B, 2, 3, H, W)``.
    """

    def to_dict(self) -> dict:
        """The settings, as ``preprocessor_config.json`` holds them."""
        return {**super().to_dict(), "image_processor_type": "LightGlueImageProcessor"}

    def preprocess(self, images, return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """A pair ``[image0, image1]`` or a list of pairs -> ``pixel_values (B, 2, 3, H, W)``."""
        flat = super().preprocess(_pairs(images), return_tensors=return_tensors, **kwargs)
        values = flat["pixel_values"]
        if return_tensors is None:
            return BatchFeature(pixel_values=[values[i : i + 2] for i in range(0, len(values), 2)])
        return BatchFeature(pixel_values=values.reshape(-1, 2, *values.shape[1:]))

    __call__ = preprocess

    def post_process_keypoint_matching(self, outputs, target_sizes, threshold: float = 0.0):
        """Per pair, the matches scoring above ``threshold``, in absolute pixels.

        ``keypoints0 (K, 2)`` and ``keypoints1 (K, 2)`` int32 absolute (x, y) in images of
        ``target_sizes`` ((height, width) per image of each pair, truncated to int as transformers
        does) and ``matching_scores (K,)`` of the matches scoring above ``threshold``.
        """
        mask = outputs.mask
        sizes = torch.as_tensor(target_sizes, device=mask.device)
        if sizes.ndim != 3 or sizes.shape[1:] != (2, 2) or len(sizes) != len(mask):
            raise ConfigError(
                "target_sizes must hold one ((height, width), (height, width)) per pair, "
                f"{len(mask)} pairs"
            )
        keypoints = (outputs.keypoints * sizes.flip(-1).reshape(-1, 2, 1, 2)).to(torch.int32)
        results = []
        for pair_mask, pair_keypoints, matches, scores in zip(
            mask, keypoints, outputs.matches[:, 0], outputs.matching_scores[:, 0]
        ):
            valid0, valid1 = pair_mask[0] > 0, pair_mask[1] > 0
            keypoints0, keypoints1 = pair_keypoints[0][valid0], pair_keypoints[1][valid1]
            matches0, scores0 = matches[valid0], scores[valid0]
            keep = (scores0 > threshold) & (matches0 > -1) & (matches0 < len(keypoints1))
            results.append(
                {
                    "keypoints0": keypoints0[keep],
                    "keypoints1": keypoints1[matches0[keep]],
                    "matching_scores": scores0[keep],
                }
            )
        return results

    def visualize_keypoint_matching(self, images, keypoint_matching_output) -> list:
        """Each pair side by side with its matches, as PIL images (transformers' drawing).

        The matches are coloured from red (score 0) to green (1).
        """
        from PIL import Image, ImageDraw

        arrays = [_rgb8(to_array(x)) for x in _pairs(images)]
        pictures = []
        for i, result in enumerate(keypoint_matching_output):
            a, b = arrays[2 * i], arrays[2 * i + 1]
            canvas = np.zeros((max(len(a), len(b)), a.shape[1] + b.shape[1], 3), np.uint8)
            canvas[: len(a), : a.shape[1]], canvas[: len(b), a.shape[1] :] = a, b
            picture = Image.fromarray(canvas)
            draw = ImageDraw.Draw(picture)
            offset = a.shape[1]
            for (x0, y0), (x1, y1), score in zip(result["keypoints0"].tolist(),
                                                 result["keypoints1"].tolist(),
                                                 result["matching_scores"].tolist()):  # fmt: skip
                color = (int(255 * (1 - score)), int(255 * score), 0)
                draw.line((x0, y0, x1 + offset, y1), fill=color, width=3)
                draw.ellipse((x0 - 2, y0 - 2, x0 + 2, y0 + 2), fill="black")
                draw.ellipse((x1 + offset - 2, y1 - 2, x1 + offset + 2, y1 + 2), fill="black")
            pictures.append(picture)
        return pictures


def _rgb8(array: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` from :func:`keypoints.image.to_array` -> ``(H, W, 3)`` uint8."""
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype != np.uint8:
        array = np.clip(array * 255, 0, 255).astype(np.uint8)
    return array
