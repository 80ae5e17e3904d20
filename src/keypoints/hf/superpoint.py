"""The transformers-compatible SuperPoint: its config, image processor and detection model.

Swap ``transformers`` for ``keypoints`` in the "Keypoint Detection" guide and get the same numbers.

``SuperPointImageProcessor`` reproduces transformers' Pillow backend bit for bit (resize with Pillow
bilinear on 8-bit RGB, rescale by 1/255, NTSC grayscale), and ``SuperPointForKeypointDetection`` (a
facade over :class:`keypoints.models.superpoint.SuperPoint`) returns transformers' output:
``keypoints`` relative (x, y) in [0, 1), ``scores``, ``descriptors``, ``mask``, padded over the
batch. Conversion to absolute pixels happens in ``post_process_keypoint_detection`` (int32, as
transformers does); the native :func:`keypoints.detect` keeps sub-pixel float coordinates instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..defaults import DEFAULT_BACKEND, DEFAULT_PRECISION
from ..errors import ConfigError, ImageError, closest
from ..image import as_image_list, resize_array, rgb_to_grayscale, to_array
from ..io import atomic_write
from ..models import superpoint as sp
from ..models.config import config_class
from ..models.weights import load_state_dict, resolve_checkpoint
from .common import BatchFeature, Facade, ModelOutput, get_field, read_config, write_json

__all__ = [
    "SuperPointConfig",
    "SuperPointImageProcessor",
    "SuperPointForKeypointDetection",
    "SuperPointKeypointDescriptionOutput",
]


@config_class
class SuperPointConfig(sp.SuperPointConfig):
    """transformers' ``SuperPointConfig``.

    :class:`keypoints.models.superpoint.SuperPointConfig` (the same fields, names and defaults) with
    transformers' ``initializer_range`` and its ``config.json`` persistence.
    """

    initializer_range: float = 0.02

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **overrides) -> SuperPointConfig:
        """Read ``config.json`` from a Hub id or Hub-layout folder, then apply ``overrides``.

        Defaults for a bare weights file; ``overrides`` are config fields given as keywords (e.g.
        ``max_keypoints=300``).
        """
        ckpt = read_config(source, overrides)
        return cls.from_dict(ckpt.config or {}, **overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` in transformers' format into ``directory``."""
        data = {
            "architectures": ["SuperPointForKeypointDetection"],
            "model_type": self.model_type,
            **self.to_dict(),
        }
        write_json(os.path.join(directory, "config.json"), data)


# Processor -----------------------------------------------------------------------------------
_IGNORED_PROCESSOR_KEYS = {
    "image_processor_type",
    "processor_class",
    "do_normalize",
    "image_mean",
    "image_std",
    "default_to_square",
    "do_convert_rgb",
    "data_format",
    "input_data_format",
    "device",
    "disable_grouping",
}


class SuperPointImageProcessor:
    """Prepare images for SuperPoint as transformers does.

    Args:
        do_resize: resize to ``size`` (default ``{"height": 480, "width": 640}``).
        resample: Pillow filter (2 = bilinear).
        do_rescale: scale 8-bit values by ``rescale_factor``. Float inputs are taken to be in
            [0, 1] already and are not rescaled again.
        rescale_factor: the factor ``do_rescale`` applies (1/255).
        do_grayscale: NTSC grayscale (0.2989 R + 0.5870 G + 0.1140 B). On by default, as in
            the Hub checkpoint's preprocessor config; ``do_grayscale=False`` reproduces a bare
            transformers ``SuperPointImageProcessor()``, whose model then reads the red channel.

    ``processor(images, return_tensors="pt")`` takes one image or a list (PIL, numpy ``(H, W)``,
    ``(H, W, 3)``, ``(H, W, 4)`` uint8/uint16/float in [0, 1], torch ``(C, H, W)``, or a path)
    and returns a :class:`BatchFeature` with ``pixel_values (B, 3, H, W)`` float32 (the three
    channels are equal after grayscale).
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: Mapping[str, int] | Sequence[int] | None = None,
        resample: int = Image.Resampling.BILINEAR,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_grayscale: bool = True,
        **kwargs,
    ) -> None:
        """Store the settings (see the class docstring), refusing unknown options."""
        _check_processor_kwargs(kwargs)
        self.do_resize = do_resize
        self.size = _parse_size(size)
        self.resample = int(resample)
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_grayscale = do_grayscale

    def __repr__(self) -> str:
        """The class name and the settings as JSON."""
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2)}"

    def to_dict(self) -> dict[str, Any]:
        """The settings, as ``preprocessor_config.json`` holds them."""
        return {
            "image_processor_type": "SuperPointImageProcessor",
            "do_resize": self.do_resize,
            "size": dict(self.size),
            "resample": self.resample,
            "do_rescale": self.do_rescale,
            "rescale_factor": self.rescale_factor,
            "do_grayscale": self.do_grayscale,
        }

    def _prepare(self, image, opts: dict[str, Any]) -> np.ndarray:
        """One image -> ``(3, H, W)`` float32, as transformers' Pillow backend computes it."""
        array = to_array(image)
        if opts["do_resize"]:
            size = opts["size"]
            array = resize_array(array, (size["height"], size["width"]), opts["resample"])
        if array.dtype == np.uint8:
            array = array.astype(np.float64)
            if opts["do_rescale"]:
                array = array * opts["rescale_factor"]
            array = array.astype(np.float32)
        if array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        elif opts["do_grayscale"] and not (
            np.array_equal(array[..., 0], array[..., 1])
            and np.array_equal(array[..., 1], array[..., 2])
        ):
            array = np.repeat(rgb_to_grayscale(array)[..., None], 3, axis=2)
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def preprocess(self, images, return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """See the class docstring; keyword arguments override the processor's settings."""
        _check_processor_kwargs(kwargs, allow_ignored=False)
        opts = {k: getattr(self, k) for k in self.to_dict() if k != "image_processor_type"}
        if "size" in kwargs:
            kwargs["size"] = _parse_size(kwargs["size"])
        opts.update(kwargs)
        arrays = [self._prepare(image, opts) for image in as_image_list(images)]
        if return_tensors is None:
            return BatchFeature(pixel_values=arrays)
        if return_tensors not in ("pt", "np"):
            raise ConfigError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ImageError(
                f"images have different sizes {sorted(s[1:] for s in shapes)} and cannot be "
                "stacked; keep do_resize=True or process them one at a time"
            )
        stacked = np.stack(arrays)
        return BatchFeature(
            pixel_values=torch.from_numpy(stacked) if return_tensors == "pt" else stacked
        )

    __call__ = preprocess

    def post_process_keypoint_detection(
        self, outputs, target_sizes: torch.Tensor | Sequence[Sequence[int]]
    ) -> list[dict[str, torch.Tensor]]:
        """Per image, the keypoints in absolute pixels with their scores and descriptors.

        ``keypoints (N, 2)`` int32 absolute (x, y) in an image of ``target_sizes`` = (height, width)
        (truncated to int, as transformers does), ``scores (N,)``, ``descriptors (N, D)``.
        """
        mask = get_field(outputs, "mask")
        if isinstance(target_sizes, torch.Tensor):
            sizes = target_sizes
        else:
            sizes = torch.tensor([list(map(int, s)) for s in target_sizes], device=mask.device)
        if sizes.ndim != 2 or sizes.shape[1] != 2:
            raise ConfigError("target_sizes must hold one (height, width) pair per image")
        if len(mask) != len(sizes):
            raise ConfigError(
                f"got {len(sizes)} target sizes for a batch of {len(mask)}; pass one (height, "
                "width) per image"
            )
        absolute = (get_field(outputs, "keypoints") * torch.flip(sizes, [1])[:, None]).to(
            torch.int32
        )
        results = []
        for m, k, s, d in zip(
            mask, absolute, get_field(outputs, "scores"), get_field(outputs, "descriptors")
        ):
            keep = m.bool()
            results.append({"keypoints": k[keep], "scores": s[keep], "descriptors": d[keep]})
        return results

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **kwargs) -> SuperPointImageProcessor:
        """Read ``preprocessor_config.json`` from a Hub id or Hub-layout folder.

        Defaults for a bare weights file; keyword arguments override it.
        """
        ckpt = read_config(source, kwargs, processor=True)
        return cls(**{**(ckpt.processor or {}), **kwargs})

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``preprocessor_config.json`` (transformers' format) into ``directory``."""
        write_json(Path(directory) / "preprocessor_config.json", self.to_dict())


def _check_processor_kwargs(kwargs: Mapping[str, Any], allow_ignored: bool = True) -> None:
    valid = {"do_resize", "size", "resample", "do_rescale", "rescale_factor", "do_grayscale"}
    for key in kwargs:
        if key in valid or (allow_ignored and key in _IGNORED_PROCESSOR_KEYS):
            continue
        raise ConfigError(
            f"unknown option '{key}' for SuperPointImageProcessor{closest(key, valid)}; "
            f"valid options: {', '.join(sorted(valid))}"
        )


def _parse_size(size) -> dict[str, int]:
    if size is None:
        return {"height": 480, "width": 640}
    if isinstance(size, Mapping) and {"height", "width"} <= set(size):
        out = {"height": int(size["height"]), "width": int(size["width"])}
    elif isinstance(size, Sequence) and len(size) == 2:
        out = {"height": int(size[0]), "width": int(size[1])}
    else:
        raise ConfigError(f"size must be {{'height': H, 'width': W}} or (H, W), got {size!r}")
    if min(out.values()) < 1:
        raise ConfigError(f"size must be positive, got {out}")
    return out


# Model ---------------------------------------------------------------------------------------
@dataclass
class SuperPointKeypointDescriptionOutput(ModelOutput):
    """transformers' output of :class:`SuperPointForKeypointDetection`.

    ``keypoints (B, N, 2)`` relative (x, y) (multiply by (width, height) for pixels),
    ``scores (B, N)``, ``descriptors (B, N, D)``, ``mask (B, N)`` int32 (1 = keypoint,
    0 = padding), ``hidden_states`` (each encoder block's output) when asked.
    """

    loss: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    descriptors: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def _as_config(config, overrides: dict) -> SuperPointConfig:
    """``config`` as this package's transformers-style config, with ``overrides`` applied.

    ``config`` may be None, a core or a transformers config, or a dict.
    """
    if config is None:
        config = SuperPointConfig()
    elif not isinstance(config, SuperPointConfig):
        data = config if isinstance(config, Mapping) else config.to_dict()
        config = SuperPointConfig.from_dict(data)
    return config.replace(**overrides) if overrides else config


class SuperPointForKeypointDetection(Facade):
    """SuperPoint with transformers' ``forward(pixel_values)`` signature and outputs.

    A facade over :class:`keypoints.models.superpoint.SuperPoint` (``.core``): the same
    parameters, under Magic Leap's names (``conv1a`` ... ``convDb``). ``pixel_values (B, C, H,
    W)``: the first channel is used (the processor makes all channels equal). Returns
    :class:`SuperPointKeypointDescriptionOutput`, computed without autograd. Options come from
    ``model.config`` (``from_pretrained(..., max_keypoints=300)`` sets them).
    """

    core: sp.SuperPoint

    def __init__(self, config=None, **overrides) -> None:
        """Build the core SuperPoint from ``config`` with ``overrides`` applied."""
        super().__init__(sp.SuperPoint(_as_config(config, overrides)))

    @property
    def config(self) -> SuperPointConfig:
        """The options (the core model's config)."""
        return self.core.config

    @config.setter
    def config(self, value) -> None:
        self.core.config = _as_config(value, {})

    @classmethod
    def from_core(cls, model: sp.SuperPoint) -> SuperPointForKeypointDetection:
        """The facade over an existing core SuperPoint (sharing its weights)."""
        facade = cls.__new__(cls)
        Facade.__init__(facade, model)
        model.config = _as_config(model.config, {})
        return facade

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SuperPointKeypointDescriptionOutput | tuple:
        """Transformers' forward; see the class docstring."""
        if labels is not None:
            raise ConfigError("SuperPoint does not support training (labels)")
        if kwargs:
            name = next(iter(kwargs))
            raise ConfigError(f"unexpected model input '{name}'; pass pixel_values")
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = getattr(pixel_values, "shape", None)
            raise ImageError(f"pixel_values must be a (B, C, H, W) tensor, got {shape}")
        height, width = pixel_values.shape[-2:]
        image = pixel_values[:, :1]
        # transformers compares keypoints against 8x the heatmap size when removing the border
        # (it multiplies the full-resolution size by the cell size again), so only the top and
        # left borders are removed. Reproduce that here; the native `detect` removes all four.
        cell = self.config.cell_size
        reach = torch.tensor([[height // cell * cell * cell, width // cell * cell * cell]])
        reach = reach.expand(len(pixel_values), 2).to(pixel_values.device)
        hidden = None
        with torch.no_grad():  # inference only (transformers has no SuperPoint training either)
            if output_hidden_states:  # intermediate maps are only available from torch
                hidden = self.core.encode_stages(image)
                heat = self.core.heatmap(hidden[-1])
                out = self.core.keypoints_from_maps(
                    heat, self.core.dense_descriptors(hidden[-1]), reach
                )
            else:
                out = self.core(image, reach)
        # Relative coordinates, computed exactly as transformers does (float32 / int64).
        keypoints = out["keypoints"] / torch.tensor([width, height], device=pixel_values.device)
        result = SuperPointKeypointDescriptionOutput(
            keypoints=keypoints,
            scores=out["scores"],
            descriptors=out["descriptors"],
            mask=out["mask"].to(torch.int32),
            hidden_states=tuple(hidden) if hidden else None,
        )
        return result.to_tuple() if return_dict is False else result

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike = sp.DEFAULT_SOURCE,
        *,
        strict: bool = True,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        backend: str = DEFAULT_BACKEND,
        precision: str = DEFAULT_PRECISION,
        **overrides,
    ) -> SuperPointForKeypointDetection:
        """Load from a Hub id or folder, a Magic Leap checkpoint or a ``.safetensors`` file.

        A Hub id is cached by huggingface_hub (``HF_HUB_OFFLINE`` respected); the folder is in the
        Hub layout; the Magic Leap checkpoint is ``superpoint_v1.pth``; the ``.safetensors`` file
        may use either key naming. Keyword ``overrides`` change config fields
        (``max_keypoints=300``); ``backend`` and ``precision`` as
        :meth:`keypoints.SuperPoint.from_pretrained`.
        """
        ckpt = resolve_checkpoint(
            source,
            revision=revision,
            cache_dir=cache_dir,
            hint="pass a local checkpoint path (e.g. /path/to/superpoint_v1.pth)",
        )
        model = cls(SuperPointConfig.from_dict(ckpt.config or {}, **overrides))
        state = load_state_dict(ckpt.weights_file)
        model.core.finish_loading(state, strict, backend, precision)
        return model.eval()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` (transformers' key names).

        They are loadable by transformers'
        ``SuperPointForKeypointDetection.from_pretrained(directory)``.
        """
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        self.config.save_pretrained(directory)
        tensors = sp.to_transformers_state_dict(
            {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        )
        atomic_write(
            os.path.join(directory, "model.safetensors"),
            lambda p: save_file(tensors, p, metadata={"format": "pt"}),
        )
