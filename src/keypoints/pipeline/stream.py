"""Detection over a stream of images that survives bad ones.

Decoding in background threads, batches of equal-size images, and one result or one error per
image, in input order. The ``extract`` engines and the ``detect`` command both run on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from ..errors import ImageError, KeypointsError, as_os_error, describe_os_error
from ..features import Features
from ..image import Prepared, to_array
from ..models.protocol import Detector

__all__ = ["detect_stream", "prefetch", "reason"]

T = TypeVar("T")
R = TypeVar("R")


def reason(error: BaseException) -> str:
    """One line saying why an item failed: our messages as they are, others with their type."""
    if isinstance(error, KeypointsError):
        return str(error)
    if (os_error := as_os_error(error)) is not None:
        return describe_os_error(os_error)
    return f"{type(error).__name__}: {error}"


def prefetch(load: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[tuple[T, Any]]:
    """``(item, load(item) or the exception it raised)`` in order.

    Loads up to ``2 * workers`` items ahead in background threads (``workers=0``: in this
    thread).
    """

    def safe(item: T):
        try:
            return load(item)
        except (KeypointsError, OSError, ValueError) as error:
            return error

    if workers == 0:
        for item in items:
            yield item, safe(item)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="keypoints-load") as pool:
        ahead = 2 * workers
        futures: list[Any] = [pool.submit(safe, item) for item in items[:ahead]]
        for i, item in enumerate(items):
            if i + ahead < len(items):
                futures.append(pool.submit(safe, items[i + ahead]))
            yield item, futures[i].result()
            futures[i] = None  # drop the result as soon as it is consumed


def _run(detector: Detector, batch: list[tuple[T, Prepared]]) -> Iterator[tuple[T, Any, float]]:
    """Detect a batch in one call; when it fails, each image alone.

    Then the others still get their results and the bad one its error. Yields
    ``(item, features or error, seconds)``.
    """
    start = time.perf_counter()
    try:
        found = detector.extract([prepared for _, prepared in batch])
    except KeypointsError as error:
        if len(batch) == 1:
            yield batch[0][0], error, time.perf_counter() - start
            return
        for entry in batch:
            yield from _run(detector, [entry])
        return
    seconds = (time.perf_counter() - start) / len(batch)
    for (item, _), features in zip(batch, found):
        yield item, features, seconds


def detect_stream(
    items: Sequence[T],
    detector: Detector,
    resize: int | Sequence[int] | None,
    *,
    load: Callable[[T], np.ndarray] = to_array,  # type: ignore[assignment]
    workers: int = 0,
    batch_size: int = 1,
) -> Iterator[tuple[T, Features | KeypointsError, float]]:
    """Detect keypoints of many images, never stopping at a bad one.

    Args:
        items: image sources (paths, or whatever ``load`` takes).
        detector: a loaded :class:`~keypoints.models.protocol.Detector`.
        resize: preprocessing (see :func:`keypoints.image.resized_shape`).
        load: ``item`` -> decoded ``(H, W, C)`` array (default :func:`keypoints.image.to_array`,
            which applies the default pixel limit).
        workers: background threads decoding and preparing images ahead.
        batch_size: images per ``detector.extract`` call (equal sizes share a forward pass).

    Yields:
        ``(item, result, seconds)`` in input order: :class:`Features` (keypoints in original
        pixels) or the :class:`~keypoints.errors.KeypointsError` that stopped this image (a
        decoding error other than ours becomes an :class:`~keypoints.errors.ImageError`), and
        the detection time per image.
    """

    def prepare(item: T) -> Prepared:
        return detector.prepare(load(item), resize)

    batch: list[tuple[T, Prepared]] = []
    for item, prepared in prefetch(prepare, items, workers):
        if isinstance(prepared, BaseException):
            yield from _flush(detector, batch)
            batch = []
            error = (
                prepared if isinstance(prepared, KeypointsError) else ImageError(reason(prepared))
            )
            yield item, error, 0.0
            continue
        batch.append((item, prepared))
        if len(batch) >= max(1, batch_size):
            yield from _flush(detector, batch)
            batch = []
    yield from _flush(detector, batch)


def _flush(detector: Detector, batch: list) -> Iterable[tuple[Any, Any, float]]:
    return _run(detector, batch) if batch else ()
