"""Model names -> classes, default weight sources and licenses; loaded models cached per process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, WeightsNotFoundError, closest
from .superpoint import DEFAULT_SOURCE as SUPERPOINT_SOURCE
from .superpoint import SuperPoint
from .weights import looks_like_hub_id

__all__ = ["ModelInfo", "MODELS", "load_model", "clear_cache"]


@dataclass(frozen=True)
class ModelInfo:
    """A named model: its class, where its weights come from, and their license."""

    name: str
    cls: type[nn.Module]
    source: str
    license: str
    bundled: bool = False


MODELS: dict[str, ModelInfo] = {
    "superpoint": ModelInfo(
        "superpoint",
        SuperPoint,
        SUPERPOINT_SOURCE,
        "Magic Leap academic/non-profit noncommercial research license (downloaded from the "
        "Hugging Face Hub on first use, never bundled)",
    ),
}

_CACHE: dict[tuple[str, str], nn.Module] = {}


def clear_cache() -> None:
    """Forget the models loaded by :func:`load_model` in this process."""
    _CACHE.clear()


def load_model(
    model: str | os.PathLike | nn.Module = "superpoint",
    device: str | torch.device | None = None,
) -> nn.Module:
    """Resolve ``model`` to a loaded network in eval mode.

    ``model`` is a registered name (:data:`MODELS`), a checkpoint path or Hub-layout folder, a
    Hub id (``namespace/name``), or an already loaded model (returned as is). Loaded models are
    cached per process, keyed by source and device.
    """
    if isinstance(model, nn.Module):
        return model if device is None else model.to(device)
    text = os.fspath(model)
    key = (text, str(device))
    if key in _CACHE:
        return _CACHE[key]
    if text in MODELS:
        info = MODELS[text]
        net = info.cls.from_pretrained(info.source)
        net.name = info.name
    elif os.path.exists(text) or looks_like_hub_id(text):
        net = SuperPoint.from_pretrained(text)
    elif os.sep in text or text.endswith((".pth", ".pt", ".bin", ".ckpt", ".safetensors")):
        raise WeightsNotFoundError(f"checkpoint '{text}' does not exist")
    else:
        raise ConfigError(
            f"unknown model '{text}'{closest(text, MODELS)}: not a model name "
            f"({', '.join(MODELS)}), an existing checkpoint path, or a Hub id (namespace/name)"
        )
    if device is not None:
        net = net.to(device)
    _CACHE[key] = net.eval()
    return net
