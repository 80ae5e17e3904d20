"""Writing results: atomic file writes, and features as ``.npz`` or ``.json``."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import ConfigError, ImageNotFoundError, KeypointsError, as_os_error
from ..features import Features

__all__ = [
    "atomic_write",
    "save_features",
    "load_features",
    "save_matches",
    "load_matches",
    "temp_prefix",
    "naming",
    "FORMATS",
]

FORMATS = ("npz", "json")

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


def save_features(features: Features, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``features`` to ``path`` as ``npz`` or ``json``.

    ``npz``: arrays ``keypoints`` (N, 2) float32, ``scores`` (N,), ``descriptors`` (N, D),
    ``image_size`` (2,) = (width, height), ``scales``/``oris`` when present, and the strings
    ``model`` and ``fingerprint`` (0-d arrays) when known. ``json``: the same keys as lists and
    strings, plus ``descriptor_dim`` and ``descriptor_dtype`` (``uint8`` for binary
    descriptors, which come back binary). ``fmt`` defaults to the file's suffix.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format '{fmt}'; allowed: {', '.join(FORMATS)}")
    arrays = features.to_numpy()
    labels = {"model": features.model, "fingerprint": features.fingerprint}

    def write(tmp: str) -> None:
        if fmt == "npz":
            strings = {k: np.asarray(v) for k, v in labels.items() if v is not None}
            payload: dict[str, Any] = {**arrays, **strings}
            with open(tmp, "wb") as f:
                np.savez(f, **payload)
        else:
            data = {k: v.tolist() for k, v in arrays.items()}
            data.update(labels)
            data["descriptor_dim"] = int(arrays["descriptors"].shape[1])
            data["descriptor_dtype"] = str(arrays["descriptors"].dtype)  # uint8: binary (ORB)
            with open(tmp, "w") as f:
                json.dump(data, f)

    return atomic_write(path, write)


#: Descriptor dtypes a JSON file may name (None: written before the key existed).
_DESCRIPTOR_DTYPES = {None: np.float32, "float32": np.float32, "float16": np.float32,
                      "uint8": np.uint8}  # fmt: skip


def load_features(path: str | os.PathLike) -> Features:
    """Read what :func:`save_features` wrote (``.npz`` or ``.json``).

    The file is untrusted input: npz files are read without pickle, and a missing, truncated or
    malformed file raises :class:`~keypoints.errors.KeypointsError` naming it.
    """
    return read_untrusted(path, "features file", _load_features)


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


def _load_features(path: Path) -> Features:
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise KeypointsError("the JSON holds no object")
        return Features.from_numpy(
            {
                "keypoints": np.asarray(data["keypoints"], dtype=np.float32).reshape(-1, 2),
                "scores": np.asarray(data["scores"], dtype=np.float32),
                "descriptors": np.asarray(
                    data["descriptors"], dtype=_DESCRIPTOR_DTYPES[data.get("descriptor_dtype")]
                ).reshape(len(data["scores"]), int(data["descriptor_dim"])),
                "image_size": data["image_size"],
                **{k: data[k] for k in ("scales", "oris") if k in data},
            },
            model=data.get("model"),
            fingerprint=data.get("fingerprint"),
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    labels = {k: str(arrays.pop(k)) for k in ("model", "fingerprint") if k in arrays}
    return Features.from_numpy(arrays, **labels)


from .results import load_matches, save_matches  # noqa: E402 - uses atomic_write above
