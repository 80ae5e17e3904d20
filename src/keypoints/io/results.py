"""The results of matching one pair, saved and read back (``keypoints match --save``).

One file holds everything needed to use a match without recomputing it: both images' keypoints,
the match indices, distances and scores, and the fitted matrix with its inlier mask. Three
formats hold the same keys: ``.npz`` (numpy), ``.json`` (lists and strings) and ``.h5`` (one
dataset or root attribute per key).

Keys (arrays and strings):

- ``keypoints0 (N0, 2)``, ``keypoints1 (N1, 2)`` float32: (x, y) in original-image pixels,
  pixel centres at integers; ``image_size0``, ``image_size1`` ``(2,)`` int64 (width, height);
- ``matches (K, 2)`` int64 (row ``(i, j)``: keypoint i of image 0 with keypoint j of image 1),
  ``distances (K,)`` float32, ``scores (K,)`` float32 (LightGlue's confidences; NaN for
  nearest-neighbour matching);
- ``method`` (``"lightglue"`` or ``"mnn"``), ``model0``, ``model1`` (the detectors), ``image0``,
  ``image1`` (the images' names, as given);
- with a verification: ``geometry`` (``"homography"`` or ``"fundamental"``), ``matrix (3, 3)``
  float64 (NaN when none could be fitted), ``inliers (K,)`` bool, ``estimator``, ``threshold``
  (pixels), ``message``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, KeypointsError, closest
from ..features import Features, Matches
from .files import atomic_write, read_untrusted

__all__ = ["MATCH_FORMATS", "match_arrays", "save_matches", "load_matches"]

#: The formats :func:`save_matches` writes.
MATCH_FORMATS = ("npz", "json", "h5")

_STRINGS = ("method", "model0", "model1", "image0", "image1", "geometry", "estimator", "message")


def match_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its suffix; :class:`ConfigError` unless one we write."""
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"hdf5": "h5"}.get(suffix, suffix)
    if fmt not in MATCH_FORMATS:
        raise ConfigError(
            f"cannot save matches as '.{suffix}'{closest(fmt, MATCH_FORMATS)}; use "
            + ", ".join(f".{f}" for f in MATCH_FORMATS)
        )
    return fmt


def match_arrays(
    features0: Features,
    features1: Features,
    matches: Matches,
    verification=None,
    names: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any]:
    """The keys of a saved match (see the module's docstring) as numpy arrays and strings."""
    count = len(matches)
    scores = matches.scores
    data: dict[str, Any] = {
        "keypoints0": features0.keypoints.detach().cpu().numpy().astype(np.float32),
        "keypoints1": features1.keypoints.detach().cpu().numpy().astype(np.float32),
        "image_size0": np.asarray(features0.image_size, np.int64),
        "image_size1": np.asarray(features1.image_size, np.int64),
        "matches": matches.indices.detach().cpu().numpy().astype(np.int64).reshape(count, 2),
        "distances": matches.distances.detach().cpu().numpy().astype(np.float32),
        "scores": np.full(count, np.nan, np.float32)
        if scores is None
        else scores.detach().cpu().numpy().astype(np.float32),
        "method": matches.method or "",
        "model0": features0.model or "",
        "model1": features1.model or "",
        "image0": names[0] or "",
        "image1": names[1] or "",
    }
    if verification is not None:
        matrix = verification.matrix
        data.update(
            geometry=verification.model,
            matrix=np.full((3, 3), np.nan) if matrix is None else np.asarray(matrix, np.float64),
            inliers=np.asarray(verification.inliers, bool).reshape(count),
            estimator=verification.estimator,
            threshold=np.float64(verification.threshold),
            message=verification.message,
        )
    return data


def save_matches(
    path: str | os.PathLike,
    features0: Features,
    features1: Features,
    matches: Matches,
    verification=None,
    names: tuple[str | None, str | None] = (None, None),
) -> Path:
    """Write one pair's keypoints, matches and verification to ``path`` (atomically).

    Args:
        path: ``.npz``, ``.json`` or ``.h5`` (the format follows the suffix; others raise
            :class:`ConfigError`).
        features0: :class:`Features` of image 0.
        features1: :class:`Features` of image 1.
        matches: :class:`Matches` between them.
        verification: the :class:`~keypoints.matching.Verification` of the matches, or None.
        names: the images' names, recorded as ``image0``/``image1``.

    Returns:
        ``path``; :func:`load_matches` reads it back.
    """
    fmt = match_format(path)
    data = match_arrays(features0, features1, matches, verification, names)

    def write(tmp: str) -> None:
        if fmt == "npz":
            with open(tmp, "wb") as f:
                arrays: dict[str, Any] = {k: np.asarray(v) for k, v in data.items()}
                np.savez(f, **arrays)
        elif fmt == "json":
            text = {k: v.tolist() if isinstance(v, np.ndarray | np.generic) else v
                    for k, v in data.items()}  # fmt: skip
            if verification is not None and verification.matrix is None:
                text["matrix"] = None  # JSON has no NaN: a missing matrix is null
            with open(tmp, "w") as f:
                json.dump(text, f)
        else:
            import h5py

            with h5py.File(tmp, "w") as file:
                for key, value in data.items():
                    if isinstance(value, str):
                        file.attrs[key] = value
                    else:
                        file.create_dataset(key, data=value)

    return atomic_write(path, write)


def load_matches(path: str | os.PathLike) -> dict[str, Any]:
    """Read what :func:`save_matches` wrote: a dict of the keys in the module's docstring.

    Arrays come back with their dtypes and shapes, strings as ``str``. The file is untrusted:
    a damaged one raises :class:`~keypoints.errors.KeypointsError` naming it.
    """
    fmt = match_format(path)

    def read(file: Path) -> dict[str, Any]:
        data = _read(file, fmt)
        _check(data)
        return data

    return read_untrusted(path, "matches file", read)


_DTYPES = {"keypoints0": np.float32, "keypoints1": np.float32, "image_size0": np.int64,
           "image_size1": np.int64, "matches": np.int64, "distances": np.float32,
           "scores": np.float32, "matrix": np.float64, "inliers": bool,
           "threshold": np.float64}  # fmt: skip


def _read(path: Path, fmt: str) -> dict[str, Any]:
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as file:
            raw = {k: file[k] for k in file.files}
    elif fmt == "json":
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise KeypointsError("the JSON holds no object")
        if "matrix" in raw and raw["matrix"] is None:
            raw["matrix"] = np.full((3, 3), np.nan)
    else:
        import h5py

        with h5py.File(path, "r") as file:
            raw = {k: np.asarray(item) for k in file if isinstance(item := file[k], h5py.Dataset)}
            raw.update({k: str(v) for k, v in file.attrs.items()})
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _STRINGS:
            out[key] = str(value)
        elif key in _DTYPES:
            out[key] = np.asarray(value, dtype=_DTYPES[key])
    out["matches"] = out["matches"].reshape(-1, 2)
    for key in ("keypoints0", "keypoints1"):
        out[key] = out[key].reshape(-1, 2)
    return out


def _check(data: dict[str, Any]) -> None:
    """Shapes and index ranges of a read match."""
    count = len(data["matches"])
    n0, n1 = len(data["keypoints0"]), len(data["keypoints1"])
    index = data["matches"]
    if count and (index.min() < 0 or index[:, 0].max() >= n0 or index[:, 1].max() >= n1):
        raise KeypointsError(f"match indices outside the keypoints ({n0} and {n1})")
    for key in ("distances", "scores", "inliers"):
        if key in data and data[key].shape != (count,):
            raise KeypointsError(f"{key} must be ({count},), not {data[key].shape}")
    if "matrix" in data and data["matrix"].shape != (3, 3):
        raise KeypointsError(f"matrix must be 3x3, not {data['matrix'].shape}")
