"""The Ray engine: the same extraction as a Ray Data pipeline.

The pipeline goes image names -> ``map_batches`` on a pool of actors that each hold the
detector -> one shard file per block; the shards are merged into the same HDF5 file by the
driver. Optional: ``pip install "keypoints[ray]"``.

The detector is shipped to the actors as it is loaded here (weights included, through Ray's
object store), never reloaded by name: a checkpoint with custom weights extracts with those
weights on every node. Each actor checks the detector's fingerprint against the run's settings.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading

from ...errors import ConfigError
from ...models.protocol import Detector
from ..settings import ExtractJob
from .local import Extractor

__all__ = ["run_ray"]


class _RayExtractor:
    """A Ray actor: receives the detector once, writes each block of image names to a shard."""

    def __init__(self, job: ExtractJob, detector: list) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("KEYPOINTS_RAY_THREADS", "1"))))
        # the detector comes as [ObjectRef]: a reference inside a list is not resolved by Ray,
        # so the constructor's own arguments stay small and inline (an actor restarted after
        # a crash fetches the weights again while the driver holds the reference; large
        # arguments stored by Ray itself could be gone, ray-project/ray#53727)
        self.extractor = Extractor(job, ray.get(detector[0]))  # checks the fingerprint

    def __call__(self, batch: dict) -> dict:
        names = [str(n) for n in batch["name"]]
        errors = dict(self.extractor.run(names, shard_size=max(1, len(names))))
        return {"name": names, "error": [errors.get(n, "") for n in names]}


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
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray engine needs Ray: pip install 'keypoints[ray]'") from None
    if not names:
        return []
    started = not ray.is_initialized()
    if started:
        _quiet_ray()
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False, logging_level=_ray_log_level())  # fmt: skip
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        _quiet_ray()  # again: importing Ray Data configures its own loggers
        blocks = max(1, math.ceil(len(names) / shard_size))
        actors = max(1, min(actors, blocks))  # more actors than blocks would idle (Ray warns)
        dataset = ray.data.from_items([{"name": n} for n in names], override_num_blocks=blocks)
        with _filtered_stderr():
            results = dataset.map_batches(
                _RayExtractor,
                fn_constructor_kwargs={"job": job, "detector": [ray.put(detector)]},
                batch_size=shard_size,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1,
                batch_format="numpy",
            ).take_all()
    finally:
        if started:
            ray.shutdown()
    return [(row["name"], row["error"]) for row in results if row["error"]]
