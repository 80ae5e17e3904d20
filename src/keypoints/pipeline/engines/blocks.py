"""The work of one block of pairs, the same in every engine.

A worker (a loop in this process, or a Ray actor) opens the features file read-only, keeps the
features of recently used images, matches a block of pairs in LightGlue batches from the block's
start, and writes the block as one shard file (:class:`~keypoints.pipeline.shards.ShardFiles`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ...defaults import DEFAULT_DEVICE, DEFAULT_MATCH_BATCH_SIZE, DEFAULT_PRECISION
from ...features import Features, Matches
from ...io.hloc import open_h5, pair_name, read_features, write_matches
from ...matching import match_batch
from ..shards import ShardFiles

__all__ = ["MATCHES_ATTR", "MatchJob", "BlockMatcher", "Pair", "match_scores"]

#: The root attribute of a matches file (and of each shard) holding the matcher's settings.
MATCHES_ATTR = "keypoints_matches"

#: A pair as the workers get it: ``(name0, name1, identity0, identity1)``.
Pair = tuple[str, str, str, str]


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


@dataclass(frozen=True)
class MatchJob:
    """One match-pairs run, as plain values the workers need (a loop here, or Ray actors).

    Attributes:
        features: the features file (absolute; workers open it read-only).
        parts: the folder of the shards (absolute).
        record: the matcher's settings (:func:`matcher_record`) each shard records.
        method: ``"mnn"`` or ``"lightglue"`` (resolved).
        options: the method's options.
        batch_size: pairs per LightGlue forward pass.
        precision: LightGlue's precision.
        device: where LightGlue runs.
        cache_size: images whose features a worker keeps in memory.
    """

    features: str
    parts: str
    record: str
    method: str
    options: dict = field(default_factory=dict)
    batch_size: int = DEFAULT_MATCH_BATCH_SIZE
    precision: str = DEFAULT_PRECISION
    device: str | None = DEFAULT_DEVICE
    cache_size: int = 64


class BlockMatcher:
    """A worker: matches blocks of pairs of the job's features, each block into one shard.

    Args:
        job: the run.
        matcher: the loaded LightGlue (``method="lightglue"``), else None.
    """

    def __init__(self, job: MatchJob, matcher=None) -> None:
        self.job, self.matcher = job, matcher
        self.cache = _FeatureCache(job.cache_size)

    def run(self, block: Sequence[Pair], done: Callable[[int], object] | None = None) -> None:
        """Match ``block`` into one shard file; ``done(n)`` after each LightGlue batch of ``n``.

        Pairs are matched in batches of the job's ``batch_size`` from the block's start, so any
        engine given the same blocks runs the same batches.
        """
        job = self.job
        kwargs = dict(job.options)
        if job.method == "lightglue":
            kwargs.update(matcher=self.matcher, precision=job.precision, device=job.device)
        attrs = {MATCHES_ATTR: job.record}
        with (
            open_h5(job.features, "features file") as source,
            ShardFiles(Path(job.parts), attrs, len(block), _write_pair) as shard,
        ):
            for start in range(0, len(block), job.batch_size):
                chunk = block[start : start + job.batch_size]
                feats = [
                    (self.cache.get(source, p[0]), self.cache.get(source, p[1])) for p in chunk
                ]
                results = match_batch(feats, job.method, batch_size=job.batch_size, **kwargs)
                for (a, b, id0, id1), (f0, _), matches in zip(chunk, feats, results):
                    item = (a, b, matches, len(f0), _scores(f0, matches), (id0, id1))
                    shard.add(pair_name(a, b), item)
                if done is not None:
                    done(len(chunk))


def _write_pair(file: h5py.File, key: str, item: tuple) -> None:
    """Store one pair's matches under its pair ``key``.

    ``item`` holds :func:`~keypoints.io.hloc.write_matches`' arguments after the file.
    """
    write_matches(file, *item)


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
