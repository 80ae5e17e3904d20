"""Files written and read safely: atomic writes, temporary names, untrusted reads.

Kept apart from :mod:`keypoints.io`'s formats so that every writer imports it without cycles.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import ImageNotFoundError, KeypointsError, as_os_error

__all__ = ["atomic_write", "naming", "temp_prefix", "read_untrusted"]

T = TypeVar("T")


def _umask() -> int:
    """The process's file-mode creation mask (read without changing it where Linux allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``; returns ``path``.

    The temporary file is in the same folder, so an interrupted run never leaves a half-written
    file under the final name. The result gets the permissions of the file it replaces, or, for a
    new file, those any program creating it would give (``0o666`` minus the umask; the temporary
    file itself starts private, 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before it takes the final name
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and (error.filename is None or error.filename == tmp
                                           or str(error.filename).endswith(".tmp")):  # fmt: skip
            error.filename = str(path)  # the user's file, not our temporary name
        raise
    return path


@contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Operating-system errors in the block (HDF5's included) name ``path`` when they name none.

    So a full disk while writing an output says which output.
    """
    try:
        yield
    except Exception as error:
        os_error = as_os_error(error)
        if os_error is None or isinstance(error, KeypointsError):
            raise
        if os_error.filename is None:
            os_error.filename = os.fspath(path)
        raise os_error from None


def temp_prefix(path: str | os.PathLike) -> str:
    """The name prefix of :func:`atomic_write`'s temporary files for ``path``.

    ``.<name>.``; for a long name (the temporary must still fit in 255 bytes) ``.<hash>.`` of it.
    """
    name = Path(path).name
    if len(os.fsencode(name)) > 200:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:20]
    return f".{name}."


def read_untrusted(path: str | os.PathLike, what: str, read: Callable[[Path], T]) -> T:
    """``read(path)`` for a file that is untrusted input (``what``: "features file", ...).

    A missing file raises :class:`~keypoints.errors.ImageNotFoundError`; whatever goes wrong
    while reading it (our checks, numpy, zip, JSON, HDF5) raises one
    :class:`~keypoints.errors.KeypointsError` "<path>: not a valid <what> (...)".
    """
    path = Path(path)
    if not path.is_file():
        raise ImageNotFoundError(f"{path}: no such {what}")
    try:
        return read(path)
    except KeypointsError as error:
        raise KeypointsError(f"{path}: not a valid {what} ({error})") from None
    except (OSError, ValueError, TypeError, KeyError, IndexError, RuntimeError, EOFError,
            zipfile.BadZipFile) as error:  # fmt: skip
        raise KeypointsError(
            f"{path}: not a valid {what} ({type(error).__name__}: {str(error)[:200]})"
        ) from None
