"""hloc's HDF5 layouts, so that hloc and its users read what we write.

The layouts are those of hloc (Sarlin et al., "From Coarse to Fine", CVPR 2019;
github.com/cvg/Hierarchical-Localization: ``extract_features.py``, ``match_features.py``,
``utils/io.py``).

Features file: one group per image name (its path relative to the image root, '/'-separated,
so nested groups), holding ``keypoints (N, 2)`` float32 (x, y) original-image pixels with pixel
centres at integers (hloc's convention too), ``scores (N,)``, ``descriptors (D, N)`` (float16
with ``half_descriptors``), ``image_size (2,)`` = (width, height), and for SIFT and ORB
``scales (N,)`` and ``oris (N,)`` (pixels, radians; as hloc's DoG extractor); attributes
``model`` and ``fingerprint`` (the detector's name and the hash of its weights and options). The
root attribute ``keypoints_config`` holds the extraction settings as JSON
(:class:`keypoints.pipeline.settings.ExtractSettings`).

Matches file: one group per pair, ``name0/name1`` with '/' inside each name replaced by '-'
(hloc's ``names_to_pair``), holding ``matches0 (N0,)`` int (index into image 1's keypoints,
-1 when unmatched) and ``matching_scores0 (N0,)``.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import torch

from ..errors import KeypointsError
from ..features import Features, Matches

__all__ = [
    "write_features",
    "read_features",
    "list_names",
    "pair_name",
    "write_matches",
    "read_matches",
    "dataset",
]


def write_features(file: h5py.File | h5py.Group, name: str, features: Features,
                   half_descriptors: bool = False) -> None:  # fmt: skip
    """Write ``features`` under ``name`` (replacing a group of that name)."""
    if name in file:
        del file[name]
    group = file.create_group(name)
    arrays = features.to_numpy()
    group.create_dataset("keypoints", data=arrays["keypoints"].astype(np.float32))
    group.create_dataset("scores", data=arrays["scores"].astype(np.float32))
    descriptors = arrays["descriptors"].T
    if half_descriptors and descriptors.dtype == np.float32:
        descriptors = descriptors.astype(np.float16)
    group.create_dataset("descriptors", data=np.ascontiguousarray(descriptors))
    group.create_dataset("image_size", data=np.asarray(features.image_size, dtype=np.int64))
    for key in ("scales", "oris"):
        if key in arrays:
            group.create_dataset(key, data=arrays[key])
    if features.model:
        group.attrs["model"] = features.model
    if features.fingerprint:
        group.attrs["fingerprint"] = features.fingerprint


def read_features(path: str | os.PathLike | h5py.File, name: str) -> Features:
    """The :class:`Features` of image ``name`` (float32 descriptors ``(N, D)``)."""
    if not isinstance(path, h5py.Group):
        with h5py.File(path, "r") as file:
            return read_features(file, name)
    group = path.get(name)
    if not isinstance(group, h5py.Group) or "keypoints" not in group:
        raise KeypointsError(f"no features for '{name}' in {path.file.filename}")
    descriptors = dataset(group, "descriptors").T
    binary = descriptors.dtype == np.uint8

    def optional(key):
        return torch.from_numpy(dataset(group, key).astype(np.float32)) if key in group else None

    width, height = (int(v) for v in dataset(group, "image_size"))
    return Features(
        keypoints=torch.from_numpy(dataset(group, "keypoints").astype(np.float32)),
        scores=torch.from_numpy(dataset(group, "scores").astype(np.float32)),
        descriptors=torch.from_numpy(
            np.ascontiguousarray(descriptors if binary else descriptors.astype(np.float32))
        ),
        image_size=(width, height),
        model=_text(group.attrs.get("model")),
        binary=bool(binary),
        scales=optional("scales"),
        orientations=optional("oris"),
        fingerprint=_text(group.attrs.get("fingerprint")),
    )


def dataset(group: h5py.Group, key: str) -> np.ndarray:
    """The array stored as dataset ``key`` of ``group``.

    A missing entry, or one that is not a dataset, raises :class:`KeypointsError` naming it.
    """
    item = group.get(key)
    if not isinstance(item, h5py.Dataset):
        raise KeypointsError(
            f"{group.file.filename}: {group.name}/{key} is missing or not an array"
        )
    return np.asarray(item[()])


def _text(value) -> str | None:
    """An HDF5 string attribute as ``str`` (h5py may return bytes), or None."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def list_names(path: str | os.PathLike | h5py.Group) -> list[str]:
    """Names of the images with features in a features file, sorted.

    As hloc's ``list_h5_names``: every group holding a ``keypoints`` dataset.
    """
    if not isinstance(path, h5py.Group):
        with h5py.File(path, "r") as file:
            return list_names(file)
    names = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Group) and isinstance(obj.get("keypoints"), h5py.Dataset):
            names.append(name)

    path.visititems(visit)
    return sorted(names)


def pair_name(name0: str, name1: str) -> str:
    """Hloc's ``names_to_pair``: ``name0/name1`` with '/' inside each name replaced by '-'."""
    return f"{name0.replace('/', '-')}/{name1.replace('/', '-')}"


def write_matches(file: h5py.File, name0: str, name1: str, matches: Matches,
                  num_keypoints0: int, scores: np.ndarray | None = None) -> None:  # fmt: skip
    """Write ``matches`` of the pair as ``matches0`` and ``matching_scores0``.

    ``matches0 (N0,)`` (-1: unmatched) and ``matching_scores0 (N0,)`` (``scores`` per match,
    default ``matches.scores``, else 1).
    """
    key = pair_name(name0, name1)
    if key in file:
        del file[key]
    group = file.create_group(key)
    indices = matches.indices.numpy()
    matches0 = np.full(num_keypoints0, -1, dtype=np.int32)
    matches0[indices[:, 0]] = indices[:, 1]
    values = np.zeros(num_keypoints0, dtype=np.float16)
    if scores is None and matches.scores is not None:
        scores = matches.scores.cpu().numpy()
    values[indices[:, 0]] = 1.0 if scores is None else scores
    group.create_dataset("matches0", data=matches0)
    group.create_dataset("matching_scores0", data=values)


def read_matches(path: str | os.PathLike | h5py.File, name0: str, name1: str) -> np.ndarray:
    """``(K, 2)`` int64 indices of the pair's matches (either order of the names)."""
    if not isinstance(path, h5py.Group):
        with h5py.File(path, "r") as file:
            return read_matches(file, name0, name1)
    key, reverse = pair_name(name0, name1), False
    if key not in path:
        key, reverse = pair_name(name1, name0), True
    if key not in path:
        raise KeypointsError(f"no matches for the pair ({name0}, {name1}) in {path.file.filename}")
    group = path[key]
    if not isinstance(group, h5py.Group):
        raise KeypointsError(f"{path.file.filename}: {key} is not a group of matches")
    matches0 = dataset(group, "matches0")
    valid = np.flatnonzero(matches0 > -1)
    pairs = np.stack([valid, matches0[valid]], axis=1).astype(np.int64)
    return pairs[:, ::-1].copy() if reverse else pairs
