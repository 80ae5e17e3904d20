"""Matching image pairs of a features file into hloc's matches layout.

The layout is that of :mod:`keypoints.io.hloc`; matching is resumable, in bounded memory, and
the file is written atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from ..defaults import (
    DEFAULT_DEVICE,
    DEFAULT_MATCH_BATCH_SIZE,
    DEFAULT_MATCHER,
    DEFAULT_PRECISION,
)
from ..errors import ConfigError, KeypointsError
from ..features import Features, Matches
from ..io import atomic_write, naming
from ..io.hloc import (
    check_pair_keys,
    image_identity,
    list_names,
    open_h5,
    pair_name,
    read_features,
    text_attribute,
    write_matches,
)
from ..io.locks import exclusive
from ..matching import check_method, match_batch, resolve_method
from ..models.protocol import state_digest

__all__ = ["match_pairs", "match_scores", "matcher_record", "MATCHES_ATTR"]

#: The root attribute of a matches file holding the matcher's settings as JSON.
MATCHES_ATTR = "keypoints_matches"


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
    device: str | None = DEFAULT_DEVICE,
    **options,
) -> tuple[Path, int, int]:
    """Match ``pairs`` of images of a features file into hloc's matches layout.

    Args:
        features: a features file written by :func:`keypoints.extract` (or hloc).
        pairs: ``(name0, name1)`` pairs of names in it (see
            :func:`~keypoints.pipeline.pairs.exhaustive_pairs`, ``sequential_pairs``,
            ``read_pairs``). Names whose hloc pair keys collide (``x/1.png``, ``x-1.png``) are
            refused.
        output: the matches ``.h5``. A pair already in it is skipped unless ``overwrite``, but
            only when it was matched from the features now in ``features`` (each pair records
            the :func:`~keypoints.io.hloc.image_identity` of both images): pairs whose features
            were extracted again since are matched again. The file records the matcher's
            settings; adding to it with other settings is refused (``overwrite`` replaces it).
            It is written to a temporary file renamed at the end, under a lock (a second run on
            the same output is refused), so an interrupted run never leaves a damaged file.
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
        device: where LightGlue runs (default ``"auto"``: CUDA when available; see
            :func:`keypoints.devices.resolve_device`); nearest neighbour runs on the CPU.
        **options: the method's options, as in :func:`keypoints.match` (``ratio``,
            ``max_distance``; ``filter_threshold``, ...).

    Returns:
        ``(output, matched, skipped)``: the path and the number of pairs matched (stale ones
        included) and skipped.
    """
    check_method(method)
    if batch_size < 1 or cache_size < 1:
        raise ConfigError("batch_size and cache_size must be >= 1")
    features, output = Path(features), Path(output)
    names = sorted({n for pair in pairs for n in pair})
    check_pair_keys(names)
    with open_h5(features, "features file") as source:
        _check_names(source, names)
        identities = {name: image_identity(source[name]) for name in names}  # type: ignore[arg-type]
        kwargs = {k: v for k, v in options.items() if v is not None}
        if method == "auto" and pairs:  # chosen once: one detector made every image
            first = (read_features(source, pairs[0][0]), read_features(source, pairs[0][1]))
            method = resolve_method(method, [first], matcher)
    record = matcher_record(method, matcher, precision, kwargs)
    if method == "lightglue":
        kwargs.update(matcher=matcher, precision=precision, device=device)

    with exclusive(output), naming(output):
        keep = output.exists() and not overwrite
        done = _current(output, pairs, identities, record) if keep else set()
        todo = [(a, b) for a, b in pairs if pair_name(a, b) not in done]
        if not todo and keep:
            return output, 0, len(pairs)

        cache = _FeatureCache(cache_size)

        def write(tmp: str) -> None:
            from tqdm import tqdm

            if keep:
                shutil.copyfile(output, tmp)
            with h5py.File(features, "r") as source, h5py.File(tmp, "a" if keep else "w") as out:
                out.attrs[MATCHES_ATTR] = record
                bar = tqdm(total=len(todo), unit="pair", disable=not progress, desc="match")
                for start in range(0, len(todo), batch_size):
                    chunk = todo[start : start + batch_size]
                    feats = [(cache.get(source, a), cache.get(source, b)) for a, b in chunk]
                    results = match_batch(feats, method, batch_size=batch_size, **kwargs)
                    for (a, b), (f0, _), matches in zip(chunk, feats, results):
                        write_matches(out, a, b, matches, len(f0), _scores(f0, matches),
                                      (identities[a], identities[b]))  # fmt: skip
                    bar.update(len(chunk))
                bar.close()

        atomic_write(output, write)
    return output, len(todo), len(pairs) - len(todo)


def matcher_record(method: str, matcher, precision: str, options: dict) -> str:
    """The matcher's settings as the JSON a matches file records (root ``keypoints_matches``).

    ``method`` is the resolved one (``"mnn"`` or ``"lightglue"``); LightGlue's weights are named
    by their name or path, or by the digest of a loaded module's weights.
    """
    entry: dict = {"method": method, "options": {k: v for k, v in sorted(options.items())}}
    if method == "lightglue":
        module = getattr(matcher, "matcher", matcher)
        if isinstance(module, torch.nn.Module):
            weights = f"sha256:{state_digest(module)[:16]}"
        else:
            weights = None if matcher is None else os.fspath(matcher)
        entry.update(weights=weights or "default for the detector", precision=precision)
    return json.dumps(entry, sort_keys=True, default=str)


def _check_names(source: h5py.File, names: Sequence[str]) -> None:
    """Every image of the pairs must have features in the file."""
    available = set(list_names(source))
    missing = sorted(set(names) - available)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise KeypointsError(
            f"{len(missing)} image(s) of the pairs are not in {source.filename}: {shown}"
        )


def _current(
    output: Path, pairs: Sequence[tuple[str, str]], identities: dict[str, str], record: str
) -> set[str]:
    """The pair keys of ``pairs`` in ``output`` that were matched from the current features.

    The output must have been written with the same matcher settings (else
    :class:`ConfigError` naming both).
    """
    with open_h5(output, "matches file") as existing:
        recorded = existing.attrs.get(MATCHES_ATTR)
        recorded = recorded.decode() if isinstance(recorded, bytes) else recorded
        if recorded != record:
            where = (
                "records no matcher settings (another tool or an older keypoints)"
                if recorded is None
                else f"was matched with {recorded}"
            )
            raise ConfigError(
                f"{output} {where}; this run matches with {record}. Use another output file, "
                "or --overwrite to replace it"
            )
        current = set()
        for a, b in pairs:
            group = existing.get(key := pair_name(a, b))
            if not isinstance(group, h5py.Group):
                continue
            keys = ("name0", "name1", "features0", "features1")
            stored = tuple(text_attribute(group.attrs.get(k)) for k in keys)
            if stored == (a, b, identities[a], identities[b]):
                current.add(key)
        return current


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
