"""Where models run: ``"auto"``, and a clear message for a device this machine does not have."""

from __future__ import annotations

import torch

from .errors import ConfigError

__all__ = ["resolve_device", "check_device", "auto_device"]


def auto_device() -> torch.device:
    """The device ``"auto"`` stands for: CUDA when a GPU is visible, else Apple's MPS, else CPU.

    As hloc and LightGlue's examples choose (``cuda`` if available).
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a :class:`torch.device` this machine has; None stays None.

    ``"auto"`` is :func:`auto_device`. A name torch does not know, or a device that is not
    available here, raises :class:`~keypoints.errors.ConfigError` with one clear line (torch
    would raise an ``AssertionError`` deep inside ``.to()``).
    """
    if device is None:
        return None
    if isinstance(device, str) and device.strip().lower() == "auto":
        return auto_device()
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device '{device}' is not a torch device ({error})") from None
    check_device(target)
    return target


def check_device(device: str | torch.device) -> None:
    """Raise :class:`ConfigError` when torch ``device`` cannot be used on this machine.

    A CUDA or MPS device on a torch built without it, or an index past the devices there are.
    """
    target = torch.device(device)
    if target.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "this torch build has no CUDA"
                if torch.version.cuda is None
                else ("no CUDA GPU is visible")
            )
            raise ConfigError(f"device '{device}' is not available: {build}; use --device cpu")
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{device}' is not available: {torch.cuda.device_count()} CUDA GPU(s)"
            )
    elif target.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{device}' is not available on this machine; use --device cpu")
