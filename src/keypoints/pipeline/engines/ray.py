"""The Ray engine: the same extraction and matching as Ray Data pipelines.

Extraction goes image names -> ``map_batches`` on a pool of actors that each hold the
detector -> one shard file per block; matching goes blocks of pairs -> actors that each hold
the matcher and read the features file -> one shard file per block. The driver merges the
shards into the same HDF5 file as the local engine. Optional: ``pip install "keypoints[ray]"``.

The model is shipped to the actors as it is loaded here (weights included, through Ray's
object store), never reloaded by name: a checkpoint with custom weights runs with those
weights on every node. Each extraction actor checks the detector's fingerprint against the
run's settings. An actor whose process dies is restarted and its block retried (Ray Data's
defaults for actor pools: ``max_restarts=-1``, ``max_task_retries=-1``); a block written twice
gives two shards with the same content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import threading
from collections.abc import Sequence
from typing import Any

from ...errors import ConfigError, KeypointsError
from ...models.protocol import Detector
from ..settings import ExtractJob
from ..stream import reason
from .blocks import BlockMatcher, MatchJob, Pair
from .local import Extractor

__all__ = ["run_ray", "run_ray_matching"]


def _received(model: list, threads: int) -> Any:
    """In an actor: set torch's threads, return the model the driver shipped.

    The model comes as ``[ObjectRef]``: a reference inside a list is not resolved by Ray, so
    the constructor's own arguments stay small and inline (an actor restarted after a crash
    fetches the weights again while the driver holds the reference; large arguments stored by
    Ray itself could be gone, ray-project/ray#53727).
    """
    import ray
    import torch

    torch.set_num_threads(threads)
    return ray.get(model[0])


class _RayExtractor:
    """A Ray actor: receives the detector once, writes each block of image names to a shard."""

    def __init__(self, job: ExtractJob, model: list, threads: int) -> None:
        self.extractor = Extractor(job, _received(model, threads))  # checks the fingerprint

    def __call__(self, batch: dict) -> dict:
        names = [str(n) for n in batch["name"]]
        errors = dict(self.extractor.run(names, shard_size=max(1, len(names))))
        return {"name": names, "error": [errors.get(n, "") for n in names]}


class _RayMatcher:
    """A Ray actor: receives the matcher once, matches each block of pairs into a shard.

    Our errors come back as data (pickled): Ray would pass on only their text.
    """

    def __init__(self, job: MatchJob, model: list, threads: int) -> None:
        self.matcher = BlockMatcher(job, _received(model, threads))

    def __call__(self, batch: dict) -> dict:
        errors = []
        for text in batch["block"]:
            try:
                self.matcher.run([tuple(pair) for pair in json.loads(str(text))])  # type: ignore[misc]
                errors.append("")
            except (KeypointsError, OSError) as error:
                errors.append(pickle.dumps(_on_node(error)).hex())
        return {"error": errors}


def _on_node(error: KeypointsError | OSError) -> KeypointsError:
    """``error`` as the driver raises it: one about a file names the node it happened on."""
    if isinstance(error, KeypointsError) and not isinstance(error, FileNotFoundError):
        return error
    import ray

    kind = type(error) if isinstance(error, KeypointsError) else KeypointsError
    return kind(
        f"{reason(error)} (on the Ray node {ray.util.get_node_ip_address()}: every node must "
        "reach the features file and the output's folder)"
    )


def _ray_log_level() -> int:
    """ERROR unless the command runs with -v (the ``keypoints`` logger at INFO or lower)."""
    verbose = logging.getLogger("keypoints").getEffectiveLevel() <= logging.INFO
    return logging.INFO if verbose else logging.ERROR


def _quiet_ray() -> None:
    """Keep a successful run's output to our own lines.

    Ray logs its start-up and Ray Data's plan on every run (the loggers below silence them;
    ``-v`` shows them). Real failures still reach the user as exceptions.
    """
    level = _ray_log_level()
    for name in ("ray", "ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(level)


#: Ray's own notes printed by its C++ core on every successful run, dropped from stderr unless
#: ``-v``: every Ray Data actor pool passes its transformer by reference, which Ray reports at
#: error level (ray-project/ray#53727) although nothing is wrong.
_RAY_NOISE = (b"ray-project/ray/issues/53727",)


@contextlib.contextmanager
def _filtered_stderr():
    """Pass file descriptor 2 through a thread that drops the lines of :data:`_RAY_NOISE`."""
    if _ray_log_level() <= logging.INFO:
        yield
        return
    import sys

    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def forward() -> None:
        pending = b""
        while chunk := os.read(read, 65536):
            pending += chunk
            # whole lines are filtered; a partial one (a progress bar's \r) goes out as it is
            cut = pending.rfind(b"\n") + 1
            lines, pending = pending[:cut], pending[cut:]
            kept = b"".join(
                line for line in lines.splitlines(keepends=True)
                if not any(noise in line for noise in _RAY_NOISE)
            )  # fmt: skip
            if b"\r" in pending:
                kept, pending = kept + pending, b""
            if kept:
                os.write(saved, kept)
        if pending:
            os.write(saved, pending)

    thread = threading.Thread(target=forward, name="keypoints-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread sees the end
        thread.join(timeout=5)
        os.close(read)
        os.close(saved)


def run_ray(job: ExtractJob, detector: Detector, names: list[str], shard_size: int,
            actors: int, address: str | None, progress: bool) -> list[tuple[str, str]]:  # fmt: skip
    """Extract ``names`` on Ray; returns the bad images with the reason.

    Runs on a local Ray instance, or on the cluster at ``address`` (or ``RAY_ADDRESS``), with
    ``actors`` model actors.
    """
    # paths the actors' processes understand whatever their working folder
    job = dataclasses.replace(job, root=os.path.abspath(job.root), parts=os.path.abspath(job.parts))
    rows = [{"name": n} for n in names]
    results = _map_actors(rows, shard_size, _RayExtractor, job, detector, actors, address,
                          progress)  # fmt: skip
    return [(row["name"], row["error"]) for row in results if row["error"]]


def run_ray_matching(job: MatchJob, matcher, blocks: Sequence[Sequence[Pair]], actors: int,
                     address: str | None, progress: bool) -> None:  # fmt: skip
    """Match ``blocks`` of pairs on Ray, one shard per block.

    ``matcher`` is the loaded LightGlue (None for nearest neighbour), shipped to the ``actors``
    actors on a local Ray instance or the cluster at ``address`` (or ``RAY_ADDRESS``).
    """
    rows = [{"block": json.dumps([list(pair) for pair in block])} for block in blocks]
    results = _map_actors(rows, 1, _RayMatcher, job, matcher, actors, address, progress)
    for row in results:  # the other blocks are done: their shards are kept for the rerun
        if row["error"]:
            raise pickle.loads(bytes.fromhex(str(row["error"])))


def _map_actors(rows: list[dict], rows_per_call: int, actor: type, job: Any, model: Any,
                actors: int, address: str | None, progress: bool) -> list[dict]:  # fmt: skip
    """``actor(job, model, threads)(batch)`` over ``rows``, on a pool of Ray actors.

    Each call gets ``rows_per_call`` rows (one block); ``model`` is shipped by a reference the
    driver holds; the actors run torch on ``KEYPOINTS_RAY_THREADS`` threads (default 1), read
    here so that a cluster's actors follow the driver's setting. Returns the actors' rows.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray engine needs Ray: pip install 'keypoints[ray]'") from None
    if not rows:
        return []
    text = os.environ.get("KEYPOINTS_RAY_THREADS", "1")
    if not text.strip().isdigit() or (threads := int(text)) < 1:
        raise ConfigError(f"KEYPOINTS_RAY_THREADS must be a whole number >= 1, not {text!r}")
    started = not ray.is_initialized()
    if started:
        _quiet_ray()
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False, logging_level=_ray_log_level())  # fmt: skip
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        _quiet_ray()  # again: importing Ray Data configures its own loggers
        blocks = max(1, math.ceil(len(rows) / rows_per_call))
        actors = max(1, min(actors, blocks))  # more actors than blocks would idle (Ray warns)
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        with _filtered_stderr():
            return dataset.map_batches(
                actor,
                fn_constructor_kwargs={"job": job, "model": [ray.put(model)], "threads": threads},
                batch_size=rows_per_call,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1,
                batch_format="numpy",
            ).take_all()
    finally:
        if started:
            ray.shutdown()
