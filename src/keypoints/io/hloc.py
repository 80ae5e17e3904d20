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
-1 when unmatched) and ``matching_scores0 (N0,)``. We add attributes hloc ignores: ``name0``
and ``name1`` (the real names: the key alone is ambiguous, ``x/1.png`` and ``x-1.png`` share
it) and ``features0``/``features1`` (:func:`image_identity` of the features matched, so matches
of features extracted since are recognised as stale); the root attribute ``keypoints_matches``
holds the matcher's settings as JSON.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable

import h5py
import numpy as np
import torch

from ..errors import ImageNotFoundError, KeypointsError
from ..features import Features, Matches, check_arrays

__all__ = [
    "write_features",
    "read_features",
    "list_names",
    "pair_name",
    "write_matches",
    "read_matches",
    "dataset",
    "image_identity",
    "check_pair_keys",
    "open_h5",
    "text_attribute",
]


def _untrusted(function):
    """Turn the errors h5py raises on damaged files into one :class:`KeypointsError`.

    Files are untrusted input: a damaged or hand-made file ends in a message naming it, never
    in h5py's or numpy's own exception.
    """

    @functools.wraps(function)
    def wrapper(source, *args, **kwargs):
        if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
            raise ImageNotFoundError(f"{os.fspath(source)}: no such file")
        try:
            return function(source, *args, **kwargs)
        except KeypointsError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as error:
            where = getattr(getattr(source, "file", None), "filename", None) or os.fspath(source)
            raise KeypointsError(
                f"{where} is damaged or not in hloc's layout ({type(error).__name__}: "
                f"{str(error)[:200]})"
            ) from None

    return wrapper


def open_h5(path: str | os.PathLike, what: str = "file") -> h5py.File:
    """Open an HDF5 file for reading; a missing or unreadable one raises :class:`KeypointsError`.

    The message names the file and says what it should be (``what``: "features file", ...).
    """
    if not os.path.isfile(path):
        raise ImageNotFoundError(f"{path}: no such {what}")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise KeypointsError(f"{path} is not a readable HDF5 {what} ({error})") from None


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


@_untrusted
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

    arrays = {k: dataset(group, k) for k in ("keypoints", "scores", "image_size")}
    optional_arrays = {k: dataset(group, k) for k in ("scales", "oris") if k in group}
    try:
        check_arrays({**arrays, "descriptors": descriptors, **optional_arrays})
    except KeypointsError as error:
        raise KeypointsError(f"{path.file.filename}: features of '{name}': {error}") from None
    width, height = (int(v) for v in arrays["image_size"])
    return Features(
        keypoints=torch.from_numpy(dataset(group, "keypoints").astype(np.float32)),
        scores=torch.from_numpy(dataset(group, "scores").astype(np.float32)),
        descriptors=torch.from_numpy(
            np.ascontiguousarray(descriptors if binary else descriptors.astype(np.float32))
        ),
        image_size=(width, height),
        model=text_attribute(group.attrs.get("model")),
        binary=bool(binary),
        scales=optional("scales"),
        orientations=optional("oris"),
        fingerprint=text_attribute(group.attrs.get("fingerprint")),
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


def text_attribute(value) -> str | None:
    """An HDF5 string attribute as ``str`` (h5py may return bytes), or None."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@_untrusted
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
                  num_keypoints0: int, scores: np.ndarray | None = None,
                  identities: tuple[str, str] | None = None) -> None:  # fmt: skip
    """Write ``matches`` of the pair as ``matches0`` and ``matching_scores0``.

    ``matches0 (N0,)`` (-1: unmatched) and ``matching_scores0 (N0,)`` (``scores`` per match,
    default ``matches.scores``, else 1); attributes ``name0``, ``name1`` and, when given, the
    :func:`image_identity` of both images' features (``features0``, ``features1``).
    """
    key = pair_name(name0, name1)
    if key in file:
        del file[key]
    group = file.create_group(key)
    group.attrs["name0"], group.attrs["name1"] = name0, name1
    if identities is not None:
        group.attrs["features0"], group.attrs["features1"] = identities
    indices = matches.indices.numpy()
    matches0 = np.full(num_keypoints0, -1, dtype=np.int32)
    matches0[indices[:, 0]] = indices[:, 1]
    values = np.zeros(num_keypoints0, dtype=np.float16)
    if scores is None and matches.scores is not None:
        scores = matches.scores.cpu().numpy()
    values[indices[:, 0]] = 1.0 if scores is None else scores
    group.create_dataset("matches0", data=matches0)
    group.create_dataset("matching_scores0", data=values)


@_untrusted
def read_matches(
    path: str | os.PathLike | h5py.File,
    name0: str,
    name1: str,
    counts: tuple[int, int] | None = None,
) -> np.ndarray:
    """``(K, 2)`` int64 indices of the pair's matches (either order of the names).

    The group's ``name0``/``name1`` attributes, when present, must name these images (else the
    key belongs to another pair with the same hloc key). With ``counts`` = the images'
    keypoint counts ``(N0, N1)``, every index is checked against them (``matches0`` must have
    one entry per keypoint of its first image): matches that do not fit the features raise
    :class:`KeypointsError` instead of reaching a consumer that trusts them (COLMAP crashes).
    """
    if not isinstance(path, h5py.Group):
        with h5py.File(path, "r") as file:
            return read_matches(file, name0, name1, counts)
    key, reverse = pair_name(name0, name1), False
    if key not in path:
        key, reverse = pair_name(name1, name0), True
    if key not in path:
        raise KeypointsError(f"no matches for the pair ({name0}, {name1}) in {path.file.filename}")
    group = path[key]
    if not isinstance(group, h5py.Group):
        raise KeypointsError(f"{path.file.filename}: {key} is not a group of matches")
    first, second = (name1, name0) if reverse else (name0, name1)
    stored = (text_attribute(group.attrs.get("name0")), text_attribute(group.attrs.get("name1")))
    if stored != (None, None) and stored != (first, second):
        raise KeypointsError(
            f"{path.file.filename}: {key} holds the matches of ({stored[0]}, {stored[1]}), not "
            f"of ({first}, {second}) (their hloc pair keys collide); rename one of the images"
        )
    matches0 = dataset(group, "matches0")
    if matches0.ndim != 1 or not np.issubdtype(matches0.dtype, np.integer):
        raise KeypointsError(
            f"{path.file.filename}: {key}/matches0 must be 1-D integers, not "
            f"{matches0.dtype} of shape {matches0.shape}"
        )
    valid = np.flatnonzero(matches0 > -1)
    if counts is not None:
        size0, size1 = (counts[1], counts[0]) if reverse else counts
        if len(matches0) != size0 or (len(valid) and matches0[valid].max() >= size1):
            highest = int(matches0[valid].max()) if len(valid) else -1
            raise KeypointsError(
                f"{path.file.filename}: the matches of ({first}, {second}) do not fit the "
                f"features: {len(matches0)} entries for {size0} keypoints of {first}, highest "
                f"index {highest} for {size1} keypoints of {second}; they were computed from "
                "other features: rerun match-pairs"
            )
    pairs = np.stack([valid, matches0[valid]], axis=1).astype(np.int64)
    return pairs[:, ::-1].copy() if reverse else pairs


@_untrusted
def image_identity(group: h5py.Group) -> str:
    """A short hash identifying the features of one image in a features file.

    It covers the keypoints (values and count), the detector's fingerprint attribute, and the
    descriptors' shape and dtype: a re-extraction with other settings or weights gives another
    identity; the same extraction again gives the same one.
    """
    keypoints = np.ascontiguousarray(dataset(group, "keypoints"), dtype=np.float32)
    descriptors = group.get("descriptors")
    digest = hashlib.blake2b(keypoints.tobytes(), digest_size=8)
    digest.update(str(text_attribute(group.attrs.get("fingerprint"))).encode())
    if isinstance(descriptors, h5py.Dataset):
        digest.update(f"{descriptors.shape}{descriptors.dtype}".encode())
    return digest.hexdigest()


def check_pair_keys(names: Iterable[str], where: str = "the pairs") -> None:
    """Raise :class:`KeypointsError` when two image names share a key in hloc's pair naming.

    hloc stores a pair under ``name0/name1`` with '/' replaced by '-', so ``x/1.png`` and
    ``x-1.png`` cannot both be stored: refusing is the only way not to put one pair's matches
    under another's key.
    """
    seen: dict[str, str] = {}
    for name in names:
        key = name.replace("/", "-")
        other = seen.setdefault(key, name)
        if other != name:
            raise KeypointsError(
                f"images '{other}' and '{name}' of {where} have the same key '{key}' in hloc's "
                "matches layout ('/' becomes '-'), so their matches could not be told apart; "
                "rename one of them"
            )
