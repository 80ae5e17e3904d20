"""Results on disk: features as ``.npz`` or ``.json`` (here), and the submodules.

One pair's matches (:mod:`~keypoints.io.results`), hloc's HDF5 layouts
(:mod:`~keypoints.io.hloc`), COLMAP (:mod:`~keypoints.io.colmap`); atomic writes and untrusted
reads (:mod:`~keypoints.io.files`); one writer per output (:mod:`~keypoints.io.locks`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, KeypointsError
from ..features import Features
from .files import atomic_write, naming, read_untrusted, temp_prefix
from .results import load_matches, save_matches

__all__ = [
    "atomic_write",
    "read_untrusted",
    "save_features",
    "load_features",
    "save_matches",
    "load_matches",
    "temp_prefix",
    "naming",
    "FORMATS",
]

FORMATS = ("npz", "json")


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
