"""Matching image pairs of a features file into hloc's matches layout.

The layout is that of :mod:`keypoints.io.hloc`. Pairs are matched in blocks, in this process
(``engine="local"``) or by actors on Ray (``engine="ray"``, one machine or a cluster); each block
is written as one shard file in ``<output>.parts/`` and the shards are merged into the output
as extraction's are (:mod:`keypoints.pipeline.shards`): the output is written atomically under a
lock, a kill loses at most the blocks being matched, and the rerun reuses the complete shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import h5py
import torch

from ..defaults import (
    DEFAULT_DEVICE,
    DEFAULT_ENGINE,
    DEFAULT_MATCH_BATCH_SIZE,
    DEFAULT_MATCH_SHARD_SIZE,
    DEFAULT_MATCHER,
    DEFAULT_PRECISION,
    DEFAULT_WORKERS,
)
from ..errors import ConfigError, KeypointsError
from ..features import Features
from ..io import naming
from ..io.hloc import (
    check_pair_keys,
    image_identity,
    list_names,
    open_h5,
    pair_name,
    read_features,
    text_attribute,
)
from ..io.locks import exclusive
from ..matching import (
    check_method,
    lightglue_weights_for,
    load_matcher,
    match_batch,
    resolve_method,
)
from ..models.protocol import state_digest
from .engines.blocks import MATCHES_ATTR, MatchJob, match_scores
from .extract import check_arguments
from .shards import complete_shards, merge_shards

__all__ = ["match_pairs", "match_scores", "matcher_record", "MATCHES_ATTR",
           "DEFAULT_MATCH_SHARD_SIZE"]  # fmt: skip

#: What each pair of a matches file records of where it comes from.
_PROVENANCE = ("name0", "name1", "features0", "features1")


def match_pairs(  # noqa: PLR0913 - the keyword-only options mirror the CLI's flags
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
    engine: str = DEFAULT_ENGINE,
    address: str | None = None,
    workers: int = DEFAULT_WORKERS,
    shard_size: int = DEFAULT_MATCH_SHARD_SIZE,
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
            Blocks of ``shard_size`` pairs are written to shard files in ``<output>.parts/``,
            merged into a temporary file renamed onto the output at the end, under a lock (a
            second run on the same output is refused): an interrupted run never leaves a
            damaged file, and its rerun reuses the complete shards.
        method: ``"auto"`` (LightGlue when weights for the features' detector are available
            offline, else mutual nearest neighbour; chosen once for all pairs), ``"mnn"`` or
            ``"lightglue"`` (its matching scores are stored; ``"mnn"`` stores a similarity, see
            :func:`match_scores`).
        overwrite: recompute pairs already in the output.
        progress: show a progress bar.
        cache_size: features of this many images are kept in memory by each worker (bounded
            whatever the number of images).
        matcher: LightGlue's weights (see :func:`keypoints.matching.load_matcher`).
        batch_size: pairs per LightGlue forward pass (padded with masks).
        precision: LightGlue's precision.
        device: where LightGlue runs (default ``"auto"``: CUDA when available; see
            :func:`keypoints.devices.resolve_device`); nearest neighbour runs on the CPU.
        engine: ``"local"`` (this process) or ``"ray"``: ``workers`` Ray actors, one block of
            pairs at a time each, on a local Ray instance or the cluster at ``address`` (or
            ``RAY_ADDRESS``). LightGlue is loaded here once and shipped to the actors with its
            weights; they read ``features`` and write the shards, so both must be on storage
            every node can reach. Needs ``pip install "keypoints[ray]"``. Both engines give
            the same matches.
        address: the Ray cluster (``engine="ray"`` only).
        workers: Ray actors (``engine="ray"`` only).
        shard_size: pairs per block and shard file (at most this much work is lost per worker
            by a kill).
        **options: the method's options, as in :func:`keypoints.match` (``ratio``,
            ``max_distance``; ``filter_threshold``, ...).

    Returns:
        ``(output, matched, skipped)``: the path and the number of pairs matched (stale ones
        included) and skipped (already in the output, or in complete shards of an interrupted
        run).
    """
    check_method(method)
    if batch_size < 1 or cache_size < 1:
        raise ConfigError("batch_size and cache_size must be >= 1")
    check_arguments(workers, shard_size, engine)
    features, output = Path(features), Path(output)
    names = sorted({n for pair in pairs for n in pair})
    check_pair_keys(names)
    first = None
    with open_h5(features, "features file") as source:
        _check_names(source, names)
        identities = {name: image_identity(source[name]) for name in names}  # type: ignore[arg-type]
        if pairs:  # one detector made every image: its model chooses for all pairs
            first = (read_features(source, pairs[0][0]), read_features(source, pairs[0][1]))
    kwargs = {k: v for k, v in options.items() if v is not None}
    if method == "auto" and first is not None:
        method = resolve_method(method, [first], matcher)
    record = matcher_record(method, matcher, precision, kwargs)
    wanted = {pair_name(a, b): (a, b) for a, b in pairs}

    def current(file: h5py.File, keys: Iterable[str] | None = None) -> list[str]:
        return _current(file, wanted, identities, keys)

    with exclusive(output), naming(output):
        parts = Path(f"{output}.parts").absolute()
        keep = output.exists() and not overwrite
        done = set(_resume(parts, record, current, overwrite))
        if keep:
            with open_h5(output, "matches file") as existing:
                _check_record(existing, record, output)
                done.update(current(existing))
        todo = [(a, b) for a, b in pairs if pair_name(a, b) not in done]
        if todo:
            job = MatchJob(os.path.abspath(features), str(parts), record, method, kwargs,
                           batch_size, precision, device, cache_size)  # fmt: skip
            blocks = [[(a, b, identities[a], identities[b]) for a, b in block]
                      for block in _blocks(pairs, done, shard_size)]  # fmt: skip
            net = _prepare_matcher(job, matcher, first, engine)
            if engine == "local":
                from .engines.local import run_local_matching

                run_local_matching(job, net, blocks, progress)
            else:
                from .engines.ray import run_ray_matching

                run_ray_matching(job, net, blocks, workers, address, progress)
        merge_shards(output, parts, {MATCHES_ATTR: record}, keep,
                     lambda part: current(part, _pair_keys(part)))  # fmt: skip
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


def _check_record(file: h5py.File, record: str, where: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` naming both unless ``file`` has the settings ``record``.

    ``file`` is the matches file or shard at ``where``.
    """
    recorded = text_attribute(file.attrs.get(MATCHES_ATTR))
    if recorded != record:
        what = (
            "records no matcher settings (another tool or an older keypoints)"
            if recorded is None
            else f"was matched with {recorded}"
        )
        raise ConfigError(
            f"{where} {what}; this run matches with {record}. Use another output file, or "
            "--overwrite to replace it"
        )


def _resume(parts: Path, record: str, current: Callable[[h5py.File, list[str]], list[str]],
            overwrite: bool) -> list[str]:  # fmt: skip
    """The pair keys of this run in the complete shards of an interrupted one.

    Shards of other matcher settings raise :class:`ConfigError`, unless ``overwrite`` (then
    removed); pairs matched from other features than today's are not counted (nor merged).
    """

    def read(file: h5py.File, path: Path) -> list[str] | None:
        if overwrite and text_attribute(file.attrs.get(MATCHES_ATTR)) != record:
            return None
        _check_record(file, record, f"the interrupted run's shard {path}")
        return current(file, _pair_keys(file))

    return complete_shards(parts, read)


def _current(file: h5py.File, wanted: dict[str, tuple[str, str]], identities: dict[str, str],
             keys: Iterable[str] | None = None) -> list[str]:  # fmt: skip
    """The pair keys of ``wanted`` (those ``keys`` of them) in ``file`` from current features.

    Each pair records its names and the identities of both images' features.
    """
    found = []
    for key in wanted if keys is None else keys:
        pair, group = wanted.get(key), file.get(key)
        if pair is None or not isinstance(group, h5py.Group):
            continue
        stored = tuple(text_attribute(group.attrs.get(k)) for k in _PROVENANCE)
        if stored == (*pair, identities[pair[0]], identities[pair[1]]):
            found.append(key)
    return found


def _pair_keys(file: h5py.File) -> list[str]:
    """The pair keys of a matches file: its groups of groups (``name0/name1``)."""
    return [f"{first}/{second}" for first, group in file.items()
            if isinstance(group, h5py.Group) for second in group]  # fmt: skip


def _blocks(pairs: Sequence[tuple[str, str]], done: set[str],
            size: int) -> list[list[tuple[str, str]]]:  # fmt: skip
    """The pairs not ``done`` in blocks of at most ``size``, each written as one shard.

    The blocks are those of the whole list (``size`` pairs each, in order), with what is done
    left out and the partial blocks that follow one another merged. So a rerun after a kill
    (whose complete shards are whole blocks, in any order on Ray) matches the other blocks as
    the uninterrupted run does: LightGlue pads a batch to its longest image, and other batches
    could round a score differently.
    """
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for start in range(0, len(pairs), size):
        block = [(a, b) for a, b in pairs[start : start + size] if pair_name(a, b) not in done]
        if current and len(current) + len(block) > size:
            blocks.append(current)
            current = []
        current.extend(block)
    return [*blocks, current] if current else blocks


def _prepare_matcher(job: MatchJob, matcher, first: tuple[Features, Features] | None,
                     engine: str):  # fmt: skip
    """The loaded LightGlue the workers use (None for nearest neighbour), options checked.

    Loaded once here: for Ray on the CPU, to be shipped to the actors with its weights (they
    move it to the job's device), never reloaded by name on the nodes.
    """
    kwargs = dict(job.options)
    if job.method == "lightglue":
        kwargs.update(matcher=matcher, precision=job.precision, device=job.device)
    match_batch([], job.method, **kwargs)  # checks the options before any pair is matched
    if job.method != "lightglue":
        return None
    if matcher is None:
        matcher = lightglue_weights_for(first[0].model if first is not None else None)
    device = job.device if engine == "local" else "cpu"
    return load_matcher(matcher, device, job.precision, **job.options)
