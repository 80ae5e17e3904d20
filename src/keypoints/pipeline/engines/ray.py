"""The Ray engine: the same extraction as a Ray Data pipeline.

The pipeline goes image names -> ``map_batches`` on a pool of actors that each hold the
detector -> one shard file per block; the shards are merged into the same HDF5 file by the
driver. Optional: ``pip install "keypoints[ray]"``.

The detector is shipped to the actors as it is loaded here (weights included, through Ray's
object store), never reloaded by name: a checkpoint with custom weights extracts with those
weights on every node. Each actor checks the detector's fingerprint against the run's settings.
"""

from __future__ import annotations

import logging
import math
import os

from ...errors import ConfigError
from ...models.protocol import Detector
from ..settings import ExtractJob
from .local import Extractor

__all__ = ["run_ray"]


class _RayExtractor:
    """A Ray actor: receives the detector once, writes each block of image names to a shard."""

    def __init__(self, job: ExtractJob, detector: Detector) -> None:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("KEYPOINTS_RAY_THREADS", "1"))))
        self.extractor = Extractor(job, detector)  # checks the fingerprint

    def __call__(self, batch: dict) -> dict:
        names = [str(n) for n in batch["name"]]
        errors = dict(self.extractor.run(names, shard_size=max(1, len(names))))
        return {"name": names, "error": [errors.get(n, "") for n in names]}


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
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING)  # fmt: skip
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        blocks = max(1, math.ceil(len(names) / shard_size))
        dataset = ray.data.from_items([{"name": n} for n in names], override_num_blocks=blocks)
        results = dataset.map_batches(
            _RayExtractor,
            fn_constructor_kwargs={"job": job, "detector": detector},
            batch_size=shard_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            batch_format="numpy",
        ).take_all()
    finally:
        if started:
            ray.shutdown()
    return [(row["name"], row["error"]) for row in results if row["error"]]
