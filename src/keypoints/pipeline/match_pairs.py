"""Matching image pairs of a features file into hloc's matches layout.

The layout is that of :mod:`keypoints.io.hloc`; matching is resumable, in bounded memory, and
the file is written atomically.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from ..defaults import DEFAULT_MATCH_BATCH_SIZE, DEFAULT_MATCHER, DEFAULT_PRECISION
from ..errors import ImageNotFoundError, KeypointsError
from ..features import Features, Matches
from ..io import atomic_write
from ..io.hloc import list_names, pair_name, read_features, write_matches
from ..matching import check_method, match_batch, resolve_method

__all__ = ["match_pairs", "match_scores"]


def match_scores(features0: Features, matches: Matches) -> np.ndarray:
    """A similarity in [0, 1] per match, as hloc's nearest-neighbour matcher stores.

    The similarity is the descriptors' dot product for unit float descriptors (``1 - d^2 / 2``
    of the L2 distance ``d``), ``1 - d / bits`` for binary ones (Hamming distance ``d``).
    """
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
    method: str = DEFAULT_MATCHER,
    overwrite: bool = False,
    progress: bool = True,
    cache_size: int = 64,
    matcher=None,
    batch_size: int = DEFAULT_MATCH_BATCH_SIZE,
    precision: str = DEFAULT_PRECISION,
    **options,
) -> tuple[Path, int, int]:
    """Match ``pairs`` of images of a features file into hloc's matches layout.

    Args:
        features: a features file written by :func:`keypoints.extract` (or hloc).
        pairs: ``(name0, name1)`` pairs of names in it (see
            :func:`~keypoints.pipeline.pairs.exhaustive_pairs`, ``sequential_pairs``,
            ``read_pairs``).
        output: the matches ``.h5``; pairs already in it are skipped unless ``overwrite``.
            It is written to a temporary file renamed at the end, so an interrupted run never
            leaves a damaged file.
        method: ``"auto"`` (LightGlue when weights for the features' detector are available
            offline, else mutual nearest neighbour; chosen once for all pairs), ``"mnn"`` or
            ``"lightglue"`` (its matching scores are stored; ``"mnn"`` stores a similarity, see
            :func:`match_scores`).
        overwrite: recompute pairs already in the output.
        progress: show a progress bar.
        cache_size: features of this many images are kept in memory (bounded whatever the
            number of images).
        matcher: LightGlue's weights (see :func:`keypoints.matching.load_matcher`).
        batch_size: pairs per LightGlue forward pass (padded with masks).
        precision: LightGlue's precision.
        **options: the method's options, as in :func:`keypoints.match` (``ratio``,
            ``max_distance``; ``filter_threshold``, ...).

    Returns:
        ``(output, matched, skipped)``: the path and the number of pairs matched and skipped.
    """
    check_method(method)
    features, output = Path(features), Path(output)
    _check_names(features, pairs)
    keep = output.exists() and not overwrite
    done = _done(output, pairs) if keep else set()
    todo = [(a, b) for a, b in pairs if pair_name(a, b) not in done]
    if not todo and keep:
        return output, 0, len(pairs)

    kwargs = {k: v for k, v in options.items() if v is not None}
    step = max(1, batch_size)
    cache = _FeatureCache(cache_size)
    if method == "auto":  # chosen once, on the first pair: one detector made every image
        with h5py.File(features, "r") as source:
            first = (cache.get(source, todo[0][0]), cache.get(source, todo[0][1]))
        method = resolve_method(method, [first], matcher)
    if method == "lightglue":
        kwargs.update(matcher=matcher, precision=precision)

    def write(tmp: str) -> None:
        from tqdm import tqdm

        if keep:
            shutil.copyfile(output, tmp)
        with h5py.File(features, "r") as source, h5py.File(tmp, "a" if keep else "w") as out:
            bar = tqdm(total=len(todo), unit="pair", disable=not progress, desc="match")
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                feats = [(cache.get(source, a), cache.get(source, b)) for a, b in chunk]
                results = match_batch(feats, method, batch_size=step, **kwargs)
                for (a, b), (f0, _), matches in zip(chunk, feats, results):
                    write_matches(out, a, b, matches, len(f0), _scores(f0, matches))
                bar.update(len(chunk))
            bar.close()

    atomic_write(output, write)
    return output, len(todo), len(pairs) - len(todo)


def _check_names(features: Path, pairs: Sequence[tuple[str, str]]) -> None:
    """Every image of the pairs must have features in the file."""
    if not features.is_file():
        raise ImageNotFoundError(f"{features}: no such features file")
    available = set(list_names(features))
    missing = sorted({n for pair in pairs for n in pair} - available)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise KeypointsError(f"{len(missing)} image(s) of the pairs are not in {features}: {shown}")


def _done(output: Path, pairs: Sequence[tuple[str, str]]) -> set[str]:
    """The pair keys of ``pairs`` already in ``output``."""
    with h5py.File(output, "r") as existing:
        return {key for a, b in pairs if (key := pair_name(a, b)) in existing}


def _scores(features0: Features, matches: Matches) -> np.ndarray:
    """What ``matching_scores0`` stores: LightGlue's scores, else a similarity."""
    if matches.scores is None:
        return match_scores(features0, matches)
    return matches.scores.numpy().astype(np.float16)


class _FeatureCache:
    """The features of the ``size`` most recently used images (least recently used dropped)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, Features] = OrderedDict()

    def get(self, file: h5py.File, name: str) -> Features:
        """The features of ``name`` in ``file``, from the cache when there."""
        if name in self.items:
            self.items.move_to_end(name)
            return self.items[name]
        self.items[name] = read_features(file, name)
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return self.items[name]
