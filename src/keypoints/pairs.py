"""Image pairs for structure-from-motion and matching every pair of a features file into hloc's
matches layout (:mod:`keypoints.io.hloc`)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from .errors import ConfigError, ImageNotFoundError, KeypointsError
from .features import Features, Matches
from .io import atomic_write
from .io.hloc import list_names, pair_name, read_features, write_matches
from .matching import check_method, match_batch

__all__ = [
    "exhaustive_pairs",
    "sequential_pairs",
    "read_pairs",
    "write_pairs",
    "match_pairs",
    "match_scores",
]


def exhaustive_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair ``(names[i], names[j])``, ``i < j``: n (n - 1) / 2 pairs."""
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def sequential_pairs(names: Sequence[str], window: int) -> list[tuple[str, str]]:
    """Each image with the ``window`` images after it in ``names`` (video or ordered captures)."""
    if window < 1:
        raise ConfigError(f"the sequential window must be >= 1, got {window}")
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 : i + 1 + window]]


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Pairs from a text file, one ``name0 name1`` per line (hloc's format; blank lines and
    ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ImageNotFoundError(f"{path}: no such pairs file")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ConfigError(f"{path}:{number}: expected 'name0 name1', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def write_pairs(pairs: Sequence[tuple[str, str]], path: str | os.PathLike) -> Path:
    """Write ``pairs`` one ``name0 name1`` per line (atomically)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.writelines(f"{a} {b}\n" for a, b in pairs)

    return atomic_write(path, write)


def match_scores(features0: Features, matches: Matches) -> np.ndarray:
    """A similarity in [0, 1] per match, as hloc's nearest-neighbour matcher stores: the
    descriptors' dot product for unit float descriptors (``1 - d^2 / 2`` of the L2 distance
    ``d``), ``1 - d / bits`` for binary ones (Hamming distance ``d``)."""
    distances = matches.distances.numpy().astype(np.float64)
    if features0.binary:
        bits = 8 * features0.descriptors.shape[1]
        return np.clip(1 - distances / bits, 0, 1).astype(np.float16)
    return np.clip(1 - distances**2 / 2, 0, 1).astype(np.float16)


def match_pairs(
    features: str | os.PathLike,
    pairs: Sequence[tuple[str, str]],
    output: str | os.PathLike,
    *,
    method: str = "mnn",
    ratio: float | None = None,
    max_distance: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cache_size: int = 64,
    matcher=None,
    batch_size: int = 8,
    **options,
) -> tuple[Path, int, int]:
    """Match ``pairs`` of images of a features file into hloc's matches layout.

    Args:
        features: a features file written by :func:`keypoints.extract` (or hloc).
        pairs: ``(name0, name1)`` pairs of names in it (see :func:`exhaustive_pairs`,
            :func:`sequential_pairs`, :func:`read_pairs`).
        output: the matches ``.h5``; pairs already in it are skipped unless ``overwrite``.
            It is written to a temporary file renamed at the end, so an interrupted run never
            leaves a damaged file.
        method, ratio, max_distance, matcher, options: as in :func:`keypoints.match`
            (``"lightglue"``: its matching scores are stored; ``"mnn"``: a similarity, see
            :func:`match_scores`).
        batch_size: pairs per LightGlue forward pass (padded with masks).
        cache_size: features of this many images are kept in memory (bounded whatever the
            number of images).

    Returns:
        ``(output, matched, skipped)``: the path and the number of pairs matched and skipped.
    """
    check_method(method)
    features, output = Path(features), Path(output)
    if not features.is_file():
        raise ImageNotFoundError(f"{features}: no such features file")
    available = set(list_names(features))
    missing = sorted({n for pair in pairs for n in pair} - available)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise KeypointsError(f"{len(missing)} image(s) of the pairs are not in {features}: {shown}")
    keep = output.exists() and not overwrite
    done = set()
    if keep:
        with h5py.File(output, "r") as existing:
            done = {key for a, b in pairs if (key := pair_name(a, b)) in existing}
    todo = [(a, b) for a, b in pairs if pair_name(a, b) not in done]
    if not todo and keep:
        return output, 0, len(pairs)

    kwargs = dict(matcher=matcher, ratio=ratio, max_distance=max_distance, **options)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    step = max(1, batch_size)
    cache: OrderedDict[str, Features] = OrderedDict()

    def load(file: h5py.File, name: str) -> Features:
        if name in cache:
            cache.move_to_end(name)
            return cache[name]
        cache[name] = read_features(file, name)
        if len(cache) > cache_size:
            cache.popitem(last=False)
        return cache[name]

    def write(tmp: str) -> None:
        from tqdm import tqdm

        if keep:
            import shutil

            shutil.copyfile(output, tmp)
        with h5py.File(features, "r") as source, h5py.File(tmp, "a" if keep else "w") as out:
            bar = tqdm(total=len(todo), unit="pair", disable=not progress, desc="match")
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                feats = [(load(source, a), load(source, b)) for a, b in chunk]
                results = match_batch(feats, method, batch_size=step, **kwargs)
                for (a, b), (f0, _), matches in zip(chunk, feats, results):
                    scores = (
                        match_scores(f0, matches)
                        if matches.scores is None
                        else matches.scores.numpy().astype(np.float16)
                    )
                    write_matches(out, a, b, matches, len(f0), scores)
                bar.update(len(chunk))
            bar.close()

    atomic_write(output, write)
    return output, len(todo), len(pairs) - len(todo)
