"""What the transformers-compatible classes share.

``BatchFeature``, dict-like model outputs, the facade that wraps a core model, and reading/writing
Hub-layout JSON files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write
from ..models.base import DeviceMixin
from ..models.weights import resolve_checkpoint

__all__ = ["BatchFeature", "ModelOutput", "Facade", "read_config", "write_json", "get_field"]


class BatchFeature(dict):
    """A dict of model inputs (``pixel_values``), like transformers' ``BatchFeature``.

    It has attribute access and ``.to(device, dtype)`` (only floating-point tensors change dtype).
    """

    def __getattr__(self, name: str):
        """``batch.pixel_values`` is ``batch["pixel_values"]``."""
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, *args, **kwargs) -> BatchFeature:
        """A copy with tensors moved to a device and floating-point ones cast to a dtype.

        Call it as ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or with keywords.
        """
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


class ModelOutput:
    """Dict-like access to a dataclass of outputs, as transformers' ``ModelOutput``.

    Fields that are None are absent; ``output[0]`` is the first present field, ``output["mask"]`` a
    field.
    """

    def keys(self) -> list[str]:
        """The names of the fields that are not None, in declaration order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]  # type: ignore[arg-type]

    def to_tuple(self) -> tuple:
        """The present fields' values, in order."""
        return tuple(getattr(self, k) for k in self.keys())

    def __getitem__(self, key):
        """A field by name, or the ``key``-th present field."""
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        """Iterate over the present field names."""
        return iter(self.keys())


class Facade(DeviceMixin, nn.Module):
    """A transformers-style model wrapping a core model of :mod:`keypoints.models`.

    The core's submodules are registered on the facade under their own names, so both share
    one set of parameters and the facade's state dict has the core's key names; attributes the
    facade does not define are read from the core (``set_backend``, ``precision``, ...).
    """

    core: nn.Module

    def __init__(self, core: nn.Module) -> None:
        """Wrap ``core``, registering its submodules on the facade under their own names."""
        super().__init__()
        self.__dict__["core"] = core
        for name, child in core.named_children():
            self._modules[name] = child  # (add_module would find the name on the core)

    def __getattr__(self, name: str):
        """Parameters and submodules first (nn.Module), then the core's attributes."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            core = self.__dict__.get("core")
            if core is None or name.startswith("__"):
                raise
            return getattr(core, name)


def read_config(source: str | os.PathLike, kwargs: dict[str, Any], *, processor: bool = False):
    """The Hub checkpoint at ``source`` without its weights.

    ``revision`` and ``cache_dir`` are taken out of ``kwargs`` (the rest are overrides for the
    caller).
    """
    hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir") if k in kwargs}
    return resolve_checkpoint(
        source, weights=False, config=not processor, processor=processor, **hub
    )


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """``data`` as sorted, indented JSON at ``path`` (written atomically)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def get_field(outputs, name: str):
    """``outputs[name]`` for a mapping, else ``outputs.name`` (transformers' outputs are both)."""
    return outputs[name] if isinstance(outputs, Mapping) else getattr(outputs, name)
