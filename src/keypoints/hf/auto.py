"""The Auto classes: one registry from a checkpoint's type to the classes that load it.

The registry maps a checkpoint's ``model_type`` (or its processor's ``image_processor_type``) to the
config, processor and model classes that load it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, closest
from .common import read_config
from .detector import detector_for_name, is_model_name, processor_for_name
from .lightglue import LightGlueConfig, LightGlueForKeypointMatching, LightGlueImageProcessor
from .superpoint import (
    SuperPointConfig,
    SuperPointForKeypointDetection,
    SuperPointImageProcessor,
)

__all__ = [
    "MODEL_TYPES",
    "PROCESSOR_TYPES",
    "AutoConfig",
    "AutoImageProcessor",
    "AutoModel",
    "AutoModelForKeypointDetection",
    "AutoModelForKeypointMatching",
    "load_auto_model",
]

#: ``model_type`` -> (config class, processor class, model class).
MODEL_TYPES: dict[str, tuple[type, type, type]] = {
    "superpoint": (SuperPointConfig, SuperPointImageProcessor, SuperPointForKeypointDetection),
    "lightglue": (LightGlueConfig, LightGlueImageProcessor, LightGlueForKeypointMatching),
}
#: ``image_processor_type`` (transformers' Pillow and fast variants) -> ``model_type``.
PROCESSOR_TYPES = {
    "SuperPointImageProcessor": "superpoint",
    "SuperPointImageProcessorPil": "superpoint",
    "LightGlueImageProcessor": "lightglue",
    "LightGlueImageProcessorPil": "lightglue",
}


def _classes_for(source: str | os.PathLike, kwargs: Mapping[str, Any], processor: bool = False):
    """(config class, processor class, model class) for the checkpoint at ``source``.

    They are chosen from its ``image_processor_type`` (processor=True) or its config's
    ``model_type``; SuperPoint for a bare weights file, which carries neither.
    """
    ckpt = read_config(source, dict(kwargs), processor=processor)
    if processor:
        kind = (ckpt.processor or {}).get("image_processor_type") or "SuperPointImageProcessor"
        if kind not in PROCESSOR_TYPES:
            raise ConfigError(
                f"image_processor_type '{kind}' is not supported; supported: "
                f"{', '.join(PROCESSOR_TYPES)}"
            )
        name = PROCESSOR_TYPES[kind]
    else:
        name = (ckpt.config or {}).get("model_type") or "superpoint"
    if name not in MODEL_TYPES:
        raise ConfigError(
            f"model_type '{name}' is not supported{closest(name, MODEL_TYPES)}; "
            f"supported: {', '.join(MODEL_TYPES)}"
        )
    return MODEL_TYPES[name]


def load_auto_model(source, kwargs, expected: type | None = None, instead: str = ""):
    """Load the model class of ``source``'s ``model_type``.

    With ``expected``, any other class raises :class:`ConfigError` pointing to the Auto class
    ``instead``.
    """
    model = _classes_for(source, kwargs)[2]
    if expected is not None and model is not expected:
        raise ConfigError(
            f"'{source}' holds a {model.__name__}, not a {expected.__name__}: use {instead}"
        )
    return model.from_pretrained(source, **kwargs)


class AutoConfig:
    """The config class for the checkpoint's ``model_type``.

    ``AutoConfig.from_pretrained(source, **overrides)`` loads it.
    """

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        """The config of the checkpoint at ``source`` (a Hub id or folder)."""
        return _classes_for(source, kwargs)[0].from_pretrained(source, **kwargs)


class AutoImageProcessor:
    """The processor for the checkpoint's ``image_processor_type``.

    ``AutoImageProcessor.from_pretrained(source)`` loads it.
    """

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        """The processor of the checkpoint at ``source`` (a Hub id or folder).

        A registered detector name (``"aliked-n16"``) gives its processor (see
        :func:`keypoints.hf.detector.processor_for_name`).
        """
        if is_model_name(source):
            return processor_for_name(str(source), **kwargs)
        return _classes_for(source, kwargs, processor=True)[1].from_pretrained(source, **kwargs)


class AutoModelForKeypointDetection:
    """The keypoint detection model for the checkpoint's ``model_type``.

    ``AutoModelForKeypointDetection.from_pretrained(source, **overrides)`` loads it (SuperPoint when
    the source is a bare weights file).
    """

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        """The keypoint detector of the checkpoint at ``source``.

        A registered detector name (``"aliked-n16"``, ``"disk"``, ``"xfeat"``, ...) gives its
        model with transformers' forward (see :func:`keypoints.hf.detector.detector_for_name`);
        ``kwargs`` are then its options.
        """
        if is_model_name(source):
            return detector_for_name(str(source), **kwargs)
        return load_auto_model(
            source, kwargs, SuperPointForKeypointDetection, "AutoModelForKeypointMatching"
        )


class AutoModelForKeypointMatching:
    """The keypoint matching model for the checkpoint's ``model_type`` (``lightglue``).

    ``AutoModelForKeypointMatching.from_pretrained(source, **overrides)`` loads it.
    """

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        """The keypoint matcher of the checkpoint at ``source``."""
        return load_auto_model(
            source, kwargs, LightGlueForKeypointMatching, "AutoModelForKeypointDetection"
        )


class AutoModel:
    """The model for the checkpoint's ``model_type``.

    ``AutoModel.from_pretrained(source, **overrides)`` loads it:
    :class:`LightGlueForKeypointMatching` for ``lightglue``, :class:`SuperPointForKeypointDetection`
    for ``superpoint`` (and a bare weights file); a registered detector name (``"aliked-n16"``)
    gives :class:`~keypoints.hf.detector.KeypointDetectionModel`.
    """

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs):
        """The model of the checkpoint at ``source``, or of a registered detector name."""
        if is_model_name(source):
            return detector_for_name(str(source), **kwargs)
        return load_auto_model(source, kwargs)
