"""The transformers-compatible surface: swap ``transformers`` for ``keypoints`` in the
"Keypoint Detection" guide and get the same numbers.

``SuperPointImageProcessor`` reproduces transformers' Pillow backend bit for bit (resize with
Pillow bilinear on 8-bit RGB, rescale by 1/255, NTSC grayscale), and
``SuperPointForKeypointDetection`` returns transformers' output: ``keypoints`` relative (x, y)
in [0, 1), ``scores``, ``descriptors``, ``mask``, padded over the batch. Conversion to absolute
pixels happens in ``post_process_keypoint_detection`` (int32, as transformers does); the native
:func:`keypoints.detect` keeps sub-pixel float coordinates instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import ConfigError, ImageError, closest
from .image import as_image_list, resize_array, rgb_to_grayscale, to_array
from .models.superpoint import SuperPoint, SuperPointConfig
from .models.weights import resolve_checkpoint

__all__ = [
    "BatchFeature",
    "SuperPointConfig",
    "SuperPointImageProcessor",
    "SuperPointForKeypointDetection",
    "SuperPointKeypointDescriptionOutput",
    "AutoConfig",
    "AutoImageProcessor",
    "AutoModelForKeypointDetection",
]


class BatchFeature(dict):
    """A dict of model inputs (``pixel_values``) with attribute access and ``.to(device, dtype)``
    (only floating-point tensors change dtype), like transformers' ``BatchFeature``."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, *args, **kwargs) -> BatchFeature:
        device = kwargs.get("device")
        dtype = kwargs.get("dtype")
        for arg in args:
            if isinstance(arg, torch.dtype):
                dtype = arg
            else:
                device = arg
        out = {}
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                if value.is_floating_point() and dtype is not None:
                    value = value.to(device=device, dtype=dtype)
                elif device is not None:
                    value = value.to(device=device)
            out[key] = value
        return BatchFeature(out)


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
        do_rescale, rescale_factor: scale 8-bit values by ``rescale_factor`` (1/255). Float
            inputs are taken to be in [0, 1] already and are not rescaled again.
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
        _check_processor_kwargs(kwargs)
        self.do_resize = do_resize
        self.size = _parse_size(size)
        self.resample = int(resample)
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_grayscale = do_grayscale

    def __repr__(self) -> str:
        return f"SuperPointImageProcessor {json.dumps(self.to_dict(), indent=2)}"

    def to_dict(self) -> dict[str, Any]:
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
        """Per image: ``keypoints (N, 2)`` int32 absolute (x, y) in an image of ``target_sizes``
        = (height, width) (truncated to int, as transformers does), ``scores (N,)``,
        ``descriptors (N, D)``."""
        mask = _get(outputs, "mask")
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
        absolute = (_get(outputs, "keypoints") * torch.flip(sizes, [1])[:, None]).to(torch.int32)
        results = []
        for m, k, s, d in zip(
            mask, absolute, _get(outputs, "scores"), _get(outputs, "descriptors")
        ):
            keep = m.bool()
            results.append({"keypoints": k[keep], "scores": s[keep], "descriptors": d[keep]})
        return results

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **kwargs) -> SuperPointImageProcessor:
        """Read ``preprocessor_config.json`` from a Hub id or Hub-layout folder (defaults for a
        bare weights file); keyword arguments override it."""
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir") if k in kwargs}
        ckpt = resolve_checkpoint(source, weights=False, config=False, processor=True, **hub)
        return cls(**{**(ckpt.processor or {}), **kwargs})

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``preprocessor_config.json`` (transformers' format) into ``directory``."""
        from .io import atomic_write

        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        target = Path(directory) / "preprocessor_config.json"
        atomic_write(target, lambda p: Path(p).write_text(text))


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


def _get(outputs, name: str):
    return outputs[name] if isinstance(outputs, Mapping) else getattr(outputs, name)


# Model ---------------------------------------------------------------------------------------
@dataclass
class SuperPointKeypointDescriptionOutput:
    """transformers' output: ``keypoints (B, N, 2)`` relative (x, y) (divide by nothing,
    multiply by (width, height) for pixels), ``scores (B, N)``, ``descriptors (B, N, D)``,
    ``mask (B, N)`` int32 (1 = keypoint, 0 = padding), ``hidden_states`` when asked for."""

    loss: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    descriptors: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def to_tuple(self) -> tuple:
        return tuple(getattr(self, k) for k in self.keys())

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.keys())


class SuperPointForKeypointDetection(SuperPoint):
    """SuperPoint with transformers' ``forward(pixel_values)`` signature and outputs.

    ``pixel_values (B, C, H, W)``: the first channel is used (the processor makes all channels
    equal). Returns :class:`SuperPointKeypointDescriptionOutput`, computed without autograd
    (the outputs plot and convert to numpy directly). Options come from
    ``model.config`` (``from_pretrained(..., max_keypoints=300)`` sets them).
    """

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SuperPointKeypointDescriptionOutput | tuple:
        if labels is not None:
            raise ConfigError("SuperPoint does not support training (labels)")
        if kwargs:
            name = next(iter(kwargs))
            raise ConfigError(f"unexpected model input '{name}'; pass pixel_values")
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = getattr(pixel_values, "shape", None)
            raise ImageError(f"pixel_values must be a (B, C, H, W) tensor, got {shape}")
        height, width = pixel_values.shape[-2:]
        hidden = [] if output_hidden_states else None
        # transformers compares keypoints against 8x the heatmap size when removing the border
        # (it multiplies the full-resolution size by the cell size again), so only the top and
        # left borders are removed. Reproduce that here; the native `detect` removes all four.
        cell = self.config.cell_size
        reach = torch.tensor([[height // cell * cell * cell, width // cell * cell * cell]])
        with torch.no_grad():  # inference only (transformers has no SuperPoint training either)
            out = self.extract(
                pixel_values[:, :1],
                reach.expand(len(pixel_values), 2).to(pixel_values.device),
                hidden_states=hidden,
            )
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


# Auto classes ----------------------------------------------------------------------------------
_MODEL_TYPES: dict[str, tuple[type, type, type]] = {
    "superpoint": (SuperPointConfig, SuperPointImageProcessor, SuperPointForKeypointDetection),
}
_PROCESSOR_TYPES = {
    "SuperPointImageProcessor": "superpoint",
    "SuperPointImageProcessorPil": "superpoint",
}


def _classes_for(source: str | os.PathLike, kwargs: Mapping[str, Any], processor: bool = False):
    """(config class, processor class, model class) for the checkpoint at ``source``, from its
    ``image_processor_type`` (processor=True) or its config's ``model_type``; SuperPoint for a
    bare weights file, which carries neither."""
    hub = {k: kwargs[k] for k in ("revision", "cache_dir") if k in kwargs}
    ckpt = resolve_checkpoint(
        source, weights=False, config=not processor, processor=processor, **hub
    )
    if processor:
        kind = (ckpt.processor or {}).get("image_processor_type") or "SuperPointImageProcessor"
        if kind not in _PROCESSOR_TYPES:
            raise ConfigError(
                f"image_processor_type '{kind}' is not supported; supported: "
                f"{', '.join(_PROCESSOR_TYPES)}"
            )
        name = _PROCESSOR_TYPES[kind]
    else:
        name = (ckpt.config or {}).get("model_type") or "superpoint"
    if name not in _MODEL_TYPES:
        raise ConfigError(
            f"model_type '{name}' is not supported{closest(name, _MODEL_TYPES)}; "
            f"supported: {', '.join(_MODEL_TYPES)}"
        )
    return _MODEL_TYPES[name]


def load_auto_model(source, kwargs, expected: type | None = None, instead: str = ""):
    """Load the model class of ``source``'s ``model_type``; with ``expected``, any other class
    raises :class:`ConfigError` pointing to the Auto class ``instead``."""
    model = _classes_for(source, kwargs)[2]
    if expected is not None and model is not expected:
        raise ConfigError(
            f"'{source}' holds a {model.__name__}, not a {expected.__name__}: use {instead}"
        )
    return model.from_pretrained(source, **kwargs)


class AutoConfig:
    """``AutoConfig.from_pretrained(source, **overrides)``: the config class for the
    checkpoint's ``model_type``."""

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        return _classes_for(source, kwargs)[0].from_pretrained(source, **kwargs)


class AutoImageProcessor:
    """``AutoImageProcessor.from_pretrained(source)``: the processor for the checkpoint's
    ``image_processor_type``."""

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        return _classes_for(source, kwargs, processor=True)[1].from_pretrained(source, **kwargs)


class AutoModelForKeypointDetection:
    """``AutoModelForKeypointDetection.from_pretrained(source, **overrides)``: the keypoint
    detection model for the checkpoint's ``model_type`` (SuperPoint when the source is a bare
    weights file)."""

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        return load_auto_model(
            source, kwargs, SuperPointForKeypointDetection, "AutoModelForKeypointMatching"
        )
