"""The error hierarchy of ``keypoints``.

Every error a user can cause (a bad image, a bad option, missing or mismatched weights)
is a :class:`KeypointsError`. Each also derives from the built-in exception that fits,
so ``except ValueError`` / ``except FileNotFoundError`` keep working. The CLI prints
these as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "KeypointsError",
    "ImageError",
    "ImageNotFoundError",
    "ConfigError",
    "WeightsError",
    "WeightsNotFoundError",
    "DatasetError",
    "closest",
]


class KeypointsError(Exception):
    """Base class of every error raised on purpose by ``keypoints``."""


class ImageError(KeypointsError, ValueError):
    """An image could not be read or has an unsupported shape, dtype or content."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """An image path does not exist."""


class ConfigError(KeypointsError, ValueError):
    """An option is unknown or out of its allowed range."""


class WeightsError(KeypointsError, ValueError):
    """Weights are corrupt, unsafe, or do not fit the architecture."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """Weights could not be found locally, in the cache, or on the Hub."""


class DatasetError(KeypointsError, ValueError):
    """An evaluation dataset is missing files or has an unknown layout."""


def closest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
