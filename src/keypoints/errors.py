"""The error hierarchy of ``keypoints``.

Every error a user can cause (a bad image, a bad option, missing or mismatched weights)
is a :class:`KeypointsError`. Each also derives from the built-in exception that fits,
so ``except ValueError`` / ``except FileNotFoundError`` keep working. The CLI prints
these as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import difflib
import errno
import re
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
    "describe_os_error",
    "as_os_error",
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


#: What to do about the operating-system errors a user meets.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
    errno.EFBIG: "the file is over the size limit; write elsewhere",
    errno.EACCES: "permission denied; is the folder writable?",
    errno.EPERM: "operation not permitted; is the folder writable?",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENAMETOOLONG: "the file name is too long (at most 255 bytes per name); shorten it",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
}


def as_os_error(error: BaseException) -> OSError | None:
    """``error`` as an :class:`OSError` when it is one, or wraps one.

    HDF5 reports write failures (a full disk, a size limit) as ``RuntimeError`` with
    ``errno = N`` in the text; those count. None for anything else.
    """
    if isinstance(error, OSError):
        return error
    code = _errno_in_text(error) if isinstance(error, RuntimeError) else None
    return OSError(code, str(error)) if code is not None else None


def _errno_in_text(error: BaseException) -> int | None:
    """The ``errno = N`` HDF5 writes into its messages, or None."""
    found = re.search(r"errno = (\d+)", str(error))
    return int(found.group(1)) if found else None


def describe_os_error(error: OSError) -> str:
    """One line for an :class:`OSError`: the file, what happened and what to do.

    HDF5 errors carry the errno only in their text (``errno = 28``): it is found there too.
    """
    code = error.errno if error.errno is not None else _errno_in_text(error)
    hint = _OS_HINTS.get(code) if code is not None else None
    if hint is None:
        hint = error.strerror or str(error)
    return f"{error.filename}: {hint}" if error.filename else hint
