"""Model names -> loaders, descriptor sizes, licenses, weight sources, offline availability.
Loaded models are cached per process."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError, WeightsError, WeightsNotFoundError, closest
from .aliked import ALIKED
from .aliked import VARIANTS as ALIKED_VARIANTS
from .base import KeypointModel
from .opencv import ORB, SIFT
from .superpoint import DEFAULT_SOURCE as SUPERPOINT_SOURCE
from .superpoint import SuperPoint
from .superpoint_open import WEIGHTS_FILE, WEIGHTS_URL, SuperPointOpen
from .weights import cache_dir, load_state_dict, looks_like_hub_id, resolve_checkpoint

__all__ = ["ModelInfo", "MODELS", "DEFAULT_MODEL", "list_models", "load_model", "clear_cache"]

DEFAULT_MODEL = "aliked-n16"


def _hub_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


@dataclass(frozen=True)
class ModelInfo:
    """A named model: how to load it, what it returns, and on what terms."""

    name: str
    kind: str  # "learned" or "handcrafted"
    descriptor_dim: int
    license: str
    weights: str  # where the weights come from
    load: Callable[[], object]
    available: Callable[[], bool]  # usable without a network right now

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "descriptor_dim": self.descriptor_dim,
            "license": self.license,
            "weights": self.weights,
            "offline": self.available(),
        }


def _aliked(name: str) -> ModelInfo:
    return ModelInfo(
        name,
        "learned",
        ALIKED_VARIANTS[name][4],
        "BSD-3-Clause",
        "bundled with the package",
        lambda: ALIKED.from_pretrained(name),
        lambda: True,
    )


MODELS: dict[str, ModelInfo] = {
    **{name: _aliked(name) for name in ALIKED_VARIANTS},
    "superpoint": ModelInfo(
        "superpoint",
        "learned",
        256,
        "Magic Leap noncommercial research only",
        f"Hugging Face Hub: {SUPERPOINT_SOURCE} (downloaded on first use)",
        lambda: SuperPoint.from_pretrained(SUPERPOINT_SOURCE),
        lambda: _hub_cached(SUPERPOINT_SOURCE),
    ),
    "superpoint-open": ModelInfo(
        "superpoint-open",
        "learned",
        256,
        "MIT",
        f"{WEIGHTS_URL} (downloaded on first use)",
        lambda: SuperPointOpen.from_pretrained(),
        lambda: (cache_dir() / WEIGHTS_FILE).is_file(),
    ),
    "sift": ModelInfo(
        "sift",
        "handcrafted",
        128,
        "Apache-2.0 (OpenCV)",
        "none",
        SIFT,
        lambda: True,
    ),
    "rootsift": ModelInfo(
        "rootsift",
        "handcrafted",
        128,
        "Apache-2.0 (OpenCV)",
        "none",
        lambda: SIFT(rootsift=True),
        lambda: True,
    ),
    "orb": ModelInfo(
        "orb",
        "handcrafted",
        32,
        "Apache-2.0 (OpenCV)",
        "none",
        ORB,
        lambda: True,
    ),
}

_CACHE: dict[tuple[str, str, str, str], object] = {}


def list_models() -> list[dict]:
    """One dict per registered model: ``name``, ``kind``, ``descriptor_dim``, ``license``,
    ``weights`` (where they come from) and ``offline`` (usable now without a network)."""
    return [info.as_dict() for info in MODELS.values()]


def clear_cache() -> None:
    """Forget the models loaded by :func:`load_model` in this process."""
    _CACHE.clear()


def _load_path(text: str):
    """A checkpoint path or Hub id: pick the architecture from its config or its key names."""
    ckpt = resolve_checkpoint(text, config=not os.path.isfile(text))
    model_type = (ckpt.config or {}).get("model_type")
    if model_type not in (None, "superpoint"):
        raise ConfigError(f"model_type '{model_type}' of '{text}' is not supported")
    if model_type == "superpoint":
        return SuperPoint.from_pretrained(text)
    state = load_state_dict(ckpt.weights)
    if "desc_head.agg_weights" in state:  # ALIKED: the variant follows from two shapes
        c1, m = state["block1.conv1.weight"].shape[0], state["desc_head.agg_weights"].shape[0]
        variant = next((n for n, v in ALIKED_VARIANTS.items() if (v[0], v[6]) == (c1, m)), None)
        if variant is None:
            raise WeightsError(f"'{text}' looks like ALIKED but matches no released variant")
        net = ALIKED(model_name=variant)
    elif any(k.startswith("backbone.0.0.conv") for k in state):
        net = SuperPointOpen()
    else:
        net = SuperPoint()
    net.load_weights(state)
    return net


def load_model(
    model=DEFAULT_MODEL,
    device: str | torch.device | None = None,
    backend: str = "auto",
    precision: str = "fp32",
    **options,
):
    """Resolve ``model`` to a ready detector.

    ``model`` is a registered name (see :func:`list_models`), a checkpoint path or Hub-layout
    folder (the architecture is recognised from its config or key names: SuperPoint, the MIT
    SuperPoint, ALIKED), a Hub id (``namespace/name``), or an already loaded model (returned
    as is). ``backend`` runs a learned model's dense network with ``"torch"``, ``"onnxruntime"``
    or ``"auto"`` (onnxruntime when installed), ``precision`` is ``"fp32"`` or ``"bf16"``; neither
    is applied to a model passed in.
    ``options`` (``max_keypoints``, ``threshold``, ...) become the returned model's defaults.
    Loaded weights are cached per process, keyed by source, device and backend.
    """
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        key = (text, str(device), backend, precision)
        if key not in _CACHE:
            if text in MODELS:
                net = MODELS[text].load()
            elif os.path.exists(text) or looks_like_hub_id(text):
                net = _load_path(text)
            elif os.sep in text or text.endswith((".pth", ".pt", ".bin", ".ckpt", ".safetensors")):
                raise WeightsNotFoundError(f"checkpoint '{text}' does not exist")
            else:
                raise ConfigError(
                    f"unknown model '{text}'{closest(text, MODELS)}: not a model name "
                    f"({', '.join(MODELS)}), an existing checkpoint path, or a Hub id"
                )
            net = net.to(device).eval() if device is not None else net.eval()
            if isinstance(net, KeypointModel):
                net.set_backend(backend).set_precision(precision)
            elif precision != "fp32":
                raise ConfigError(f"'{text}' runs in OpenCV: precision must be fp32")
            _CACHE[key] = net
        net = _CACHE[key]
    else:
        net = model if device is None else model.to(device)
    if options:
        config = net.config.replace(**options)  # validates the names and ranges
        net = copy.copy(net)  # shares the weights
        net.config = config
    return net
