"""The local engine: extraction and matching into shards in this process.

One loaded detector in this process extracts image names into shards, while background threads
decode the next images; one loaded matcher matches blocks of pairs, one shard per block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from ...errors import KeypointsError
from ...image import to_array
from ...models.protocol import Detector
from ..settings import ExtractJob
from ..shards import ShardWriter
from ..stream import detect_stream, reason
from .blocks import BlockMatcher, MatchJob, Pair

__all__ = ["Extractor", "run_local", "run_local_matching"]


class Extractor:
    """A loaded detector writing lists of image names into shard files."""

    def __init__(self, job: ExtractJob, detector: Detector) -> None:
        """Set up ``detector`` for ``job``, refusing a detector of another fingerprint."""
        if detector.fingerprint != job.settings.fingerprint:
            raise KeypointsError(
                f"this worker's detector ({detector.name}, fingerprint {detector.fingerprint}) "
                f"is not the one the run was started with ({job.settings.model}, fingerprint "
                f"{job.settings.fingerprint}): is the same keypoints version installed everywhere?"
            )
        self.job, self.detector = job, detector

    def load(self, name: str):
        """The decoded image ``name`` (relative to the job's root)."""
        return to_array(str(Path(self.job.root) / name), max_pixels=self.job.max_pixels)

    def run(self, names: list[str], shard_size: int, workers: int = 0,
            progress: bool = False) -> list[tuple[str, str]]:  # fmt: skip
        """Extract ``names`` into shards; returns the bad images with the reason.

        ``names`` are decoded in ``workers`` threads and written into shards of ``shard_size``
        images.
        """
        errors: list[tuple[str, str]] = []
        stream = detect_stream(names, self.detector, self.job.settings.resize, load=self.load,
                               workers=workers)  # fmt: skip
        with ShardWriter(Path(self.job.parts), self.job.settings, shard_size) as writer:
            for name, result, _ in _progress(stream, len(names), progress):
                if isinstance(result, KeypointsError):
                    errors.append((name, reason(result)))
                else:
                    writer.add(name, result)
        return errors


def run_local(job: ExtractJob, detector: Detector, names: list[str], shard_size: int,
              workers: int, progress: bool) -> list[tuple[str, str]]:  # fmt: skip
    """Extract ``names`` in this process; returns the bad images with the reason."""
    return Extractor(job, detector).run(names, shard_size, workers, progress)


def run_local_matching(job: MatchJob, matcher, blocks: Sequence[Sequence[Pair]],
                       progress: bool) -> None:  # fmt: skip
    """Match ``blocks`` of pairs in this process, one shard per block.

    ``matcher`` is the loaded LightGlue (None for nearest neighbour).
    """
    from tqdm import tqdm

    worker = BlockMatcher(job, matcher)
    total = sum(len(block) for block in blocks)
    with tqdm(total=total, unit="pair", disable=not progress, desc="match") as bar:
        for block in blocks:
            worker.run(block, bar.update)


def _progress(items: Iterator, total: int, enabled: bool) -> Iterator:
    from tqdm import tqdm

    yield from tqdm(items, total=total, unit="img", disable=not enabled or total == 0,
                    desc="extract", dynamic_ncols=True)  # fmt: skip
