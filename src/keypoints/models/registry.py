"""The registry of detectors, and :func:`load_model`.

Detector names -> their :class:`~keypoints.models.protocol.DetectorInfo` entries, and
:func:`load_model`, which turns a name, a checkpoint or a Hub id into a ready
:class:`~keypoints.models.protocol.Detector`. Loaded models are cached per process.

To add a detector: write ``models/<name>.py`` (its config, its network implementing the protocol,
its ``DetectorInfo``) and list the info in :data:`MODELS` below.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

from ..defaults import DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_PRECISION
from ..devices import resolve_device
from ..errors import ConfigError, WeightsError, WeightsNotFoundError, closest
from . import aliked, disk, opencv, superpoint, superpoint_open, xfeat
from .aliked import ALIKED
from .aliked import VARIANTS as ALIKED_VARIANTS
from .base import KeypointModel
from .disk import DISK
from .protocol import Detector, DetectorInfo
from .superpoint import SuperPoint
from .superpoint_open import SuperPointOpen
from .weights import load_state_dict, looks_like_hub_id, resolve_checkpoint
from .xfeat import XFeat

__all__ = [
    "ModelInfo",
    "MODELS",
    "DEFAULT_MODEL",
    "list_models",
    "load_model",
    "detector_info",
    "clear_cache",
]

#: Former name of :class:`~keypoints.models.protocol.DetectorInfo`.
ModelInfo = DetectorInfo

#: Every named detector, in listing order.
MODELS: dict[str, DetectorInfo] = {
    info.name: info
    for info in (
        *aliked.INFOS.values(),
        superpoint.INFO,
        superpoint_open.INFO,
        disk.INFO,
        xfeat.INFO,
        *opencv.INFOS.values(),
    )
}

_CACHE: dict[tuple[str, str, str, str], Any] = {}


def list_models() -> list[dict]:
    """One dict per registered model (see :meth:`DetectorInfo.as_dict`).

    Keys: ``name``, ``kind``, ``descriptor_dim``, ``binary``, ``license``, ``weights``
    (where they come from), ``matcher_weights`` (the LightGlue release for its descriptors) and
    ``offline``.
    """
    return [info.as_dict() for info in MODELS.values()]


def detector_info(name: str | None) -> DetectorInfo | None:
    """The registry entry of the detector ``name`` (e.g. ``Features.model``), or None."""
    return MODELS.get(name) if name is not None else None


def clear_cache() -> None:
    """Forget the models loaded by :func:`load_model` in this process."""
    _CACHE.clear()


def _load_path(text: str) -> KeypointModel:
    """A checkpoint path or Hub id: pick the architecture from its config or its key names."""
    ckpt = resolve_checkpoint(text, config=not os.path.isfile(text))
    model_type = (ckpt.config or {}).get("model_type")
    if model_type not in (None, "superpoint"):
        raise ConfigError(f"model_type '{model_type}' of '{text}' is not supported")
    if model_type == "superpoint":
        return SuperPoint.from_pretrained(text)
    state = load_state_dict(ckpt.weights_file)
    net: KeypointModel
    if "desc_head.agg_weights" in state:  # ALIKED: the variant follows from two shapes
        c1, m = state["block1.conv1.weight"].shape[0], state["desc_head.agg_weights"].shape[0]
        variant = next((n for n, v in ALIKED_VARIANTS.items() if (v[0], v[6]) == (c1, m)), None)
        if variant is None:
            raise WeightsError(f"'{text}' looks like ALIKED but matches no released variant")
        net = ALIKED(model_name=variant)
    elif any(k.startswith("backbone.0.0.conv") for k in state):
        net = SuperPointOpen()
    elif any(k.startswith("unet.path_down.") for k in state):
        net = DISK()
    elif "keypoint_head.3.weight" in state:
        net = XFeat()
    else:
        net = SuperPoint()
    net.load_weights(state)
    return net


def _load_source(text: str) -> Detector:
    """A registered name, an existing checkpoint, or a Hub id -> a detector with defaults."""
    if text in MODELS:
        return MODELS[text].load()
    if os.path.exists(text) or looks_like_hub_id(text):
        return _load_path(text)
    if os.sep in text or text.endswith((".pth", ".pt", ".bin", ".ckpt", ".safetensors")):
        raise WeightsNotFoundError(f"checkpoint '{text}' does not exist")
    raise ConfigError(
        f"unknown model '{text}'{closest(text, MODELS)}: not a model name "
        f"({', '.join(MODELS)}), an existing checkpoint path, or a Hub id"
    )


def _to_device(net: Detector, device: str | torch.device | None, given: bool = False) -> Detector:
    """``net`` on ``device`` (torch modules move; others run on the CPU only).

    A detector the caller ``given`` stays where it is under ``"auto"`` (the device is still
    checked).
    """
    target = resolve_device(device)
    if target is None or (given and device == DEFAULT_DEVICE):
        return net
    if not isinstance(net, nn.Module) and device == DEFAULT_DEVICE:
        return net  # OpenCV detectors run on the CPU, which "auto" allows
    if isinstance(net, nn.Module):
        return net.to(target)
    if target.type != "cpu":
        raise ConfigError(f"{net.name} runs on the CPU only; use --device cpu")
    return net


def load_model(
    model: str | os.PathLike | Detector = DEFAULT_MODEL,
    device: str | torch.device | None = DEFAULT_DEVICE,
    backend: str = DEFAULT_BACKEND,
    precision: str = DEFAULT_PRECISION,
    **options,
) -> Any:
    """Resolve ``model`` to a ready :class:`~keypoints.models.protocol.Detector`.

    Args:
        model: a registered name (see :func:`list_models`), a checkpoint path or Hub-layout
            folder (the architecture is recognised from its config or key names: SuperPoint,
            the MIT SuperPoint, ALIKED, DISK, XFeat), a Hub id (``namespace/name``), or a
            detector object (returned as is, moved to ``device``).
        device: where to run: ``"auto"`` (default: CUDA when a GPU is visible, else the CPU;
            see :func:`keypoints.devices.auto_device`; a detector passed in stays on its
            device), a torch device, or None (the CPU for a model loaded here, the model's own
            device for one passed in). OpenCV detectors run
            on the CPU only. A device this machine lacks raises :class:`ConfigError`.
        backend: a learned model's dense network in ``"torch"``, ``"onnxruntime"`` or
            ``"auto"`` (onnxruntime when installed); not applied to a detector passed in.
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"fast"`` (see
            :meth:`KeypointModel.set_precision`); not applied to a detector passed in.
        **options: detector options (``max_keypoints``, ``threshold``, ...), validated and
            merged into the returned detector's config once (a copy sharing the weights).

    Returns:
        The detector. Loaded weights are cached per process, keyed by source, device, backend
        and precision.
    """
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        key = (text, str(device), backend, precision)
        if key not in _CACHE:
            net = _to_device(_load_source(text), device)
            if isinstance(net, KeypointModel):
                net.eval().set_backend(backend).set_precision(precision)
            elif precision not in (DEFAULT_PRECISION, "fast"):  # "fast" is fp32 for OpenCV
                raise ConfigError(f"'{text}' runs in OpenCV: precision must be fp32 (or fast)")
            _CACHE[key] = net
        net = _CACHE[key]
    else:
        net = _to_device(model, device, given=True)
    if options:
        config = net.config.replace(**options)  # validates the names and ranges
        net = copy.copy(net)  # shares the weights
        net.config = config
    return net
