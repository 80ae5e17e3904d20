"""Bulk feature extraction into one hloc-compatible HDF5 file.

The extraction is resumable, crash-safe, in bounded memory, decoding in background threads
while the model computes.

Crash safety. An HDF5 file open for writing can be left unreadable by a kill, so the final file
is never opened for writing. Results go to shard files in ``<output>.parts/``: each shard is
written under a temporary name and renamed once complete (a kill loses at most the shard being
written). At the end the existing output (if any) and the shards are merged into a temporary
file that is renamed onto the output, then the shards are removed. A rerun after a kill skips
the images already in the output or in complete shards, so it finishes the job with the same
results as an uninterrupted run (detection of one image does not depend on the others).

Identity. The output and every shard record :class:`~keypoints.pipeline.settings.ExtractSettings`
(the detector's name and fingerprint: a hash of its weights and options; the preprocessing);
a run with other weights or options refuses to add to them, naming the fields that differ.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import (
    DEFAULT_ENGINE,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MODEL,
    DEFAULT_RESIZE,
    DEFAULT_SHARD_SIZE,
    DEFAULT_WORKERS,
    ENGINES,
)
from ..errors import ConfigError, closest
from ..image import check_resize
from ..io import naming
from ..io.hloc import list_names
from ..io.locks import exclusive
from ..models.protocol import Detector
from ..models.registry import load_model
from .images import list_images
from .settings import ExtractJob, ExtractSettings
from .shards import check_output, merge, resume_shards, write_errors

__all__ = ["extract", "extract_report", "ExtractReport"]

#: :func:`keypoints.load_model`'s arguments, accepted among the options.
_LOAD_ARGUMENTS = ("device", "backend", "precision")


@dataclass
class ExtractReport:
    """What :func:`extract_report` did.

    Attributes:
        output: the features file.
        extracted: images extracted in this run.
        skipped: images already present (in the output or in complete shards).
        errors: ``(name, reason)`` of the bad images.
        seconds: wall time of the run.
        settings: the settings the output records.
    """

    output: Path
    extracted: int = 0
    skipped: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    settings: ExtractSettings | None = None


def extract(
    images,
    output: str | os.PathLike,
    model: str | os.PathLike | Detector = DEFAULT_MODEL,
    **kwargs,
) -> Path:
    """Extract features of many images into ``output``; returns the output path.

    ``output`` has hloc's HDF5 layout (see :mod:`keypoints.io.hloc`). See :func:`extract_report`
    for the arguments and behaviour.
    """
    return extract_report(images, output, model, **kwargs).output


def extract_report(
    images,
    output: str | os.PathLike,
    model: str | os.PathLike | Detector = DEFAULT_MODEL,
    *,
    resize: int | Sequence[int] | None = DEFAULT_RESIZE,
    half_descriptors: bool = False,
    workers: int = DEFAULT_WORKERS,
    overwrite: bool = False,
    shard_size: int = DEFAULT_SHARD_SIZE,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    engine: str = DEFAULT_ENGINE,
    address: str | None = None,
    **options,
) -> ExtractReport:
    """Extract and describe keypoints of many images into one HDF5 file.

    Args:
        images: a folder, a text file of paths, or a list of paths (see
            :func:`~keypoints.pipeline.images.list_images`); names in the file are relative
            to the folder, the text file's folder, or the paths' common folder.
        output: the ``.h5`` file. Images already in it (or in shards of an interrupted run) are
            skipped unless ``overwrite``; it must have been written with the same settings
            (:class:`~keypoints.pipeline.settings.ExtractSettings`, recorded in its root
            attribute ``keypoints_config``): other weights or options are refused, naming the
            fields that differ.
        model: a model name (:func:`keypoints.list_models`), a checkpoint, or a loaded
            detector (see :func:`keypoints.load_model`).
        resize: longest side (default 1024, never upsampling), ``(height, width)``, or None.
        half_descriptors: store descriptors as float16 (keypoints always stay float32).
        workers: background threads decoding and resizing images while the model computes
            (0: everything in this thread); with ``engine="ray"``, the number of model actors.
        overwrite: recompute images that are already in the output (a file of other settings
            is replaced, never mixed).
        shard_size: images per shard (at most this much work is lost by a kill).
        max_pixels: refuse larger images (Pillow's decompression-bomb limit by default).
        progress: show a progress bar (images/s and ETA).
        engine: ``"local"`` (this process) or ``"ray"``: a Ray Data pipeline, one shard per
            block, on a local Ray instance or the cluster at ``address`` (or ``RAY_ADDRESS``).
            The detector is shipped to the actors with its weights. Shards must be on storage
            all nodes can write (the output's folder). Needs ``pip install "keypoints[ray]"``.
        address: the Ray cluster (``engine="ray"`` only).
        **options: detector options (``max_keypoints``, ``threshold``, ``nms_radius``), and
            ``device``, ``backend``, ``precision`` as in :func:`keypoints.detect`.

    Returns:
        An :class:`ExtractReport`. Bad images (missing, unreadable, truncated, too large) do not
        stop the run: they are listed in the report and in ``<output>.errors.txt``.
    """
    start_time = time.perf_counter()
    check_arguments(workers, shard_size, engine)
    check_resize(resize, max_pixels)
    image_root, names = list_images(images)
    options = {k: v for k, v in options.items() if v is not None}
    loading = {k: options.pop(k) for k in _LOAD_ARGUMENTS if k in options}
    net = load_model(model, **loading, **options)  # options merged into the config once
    settings = ExtractSettings.of(net, resize, half_descriptors)

    output = Path(output)
    with exclusive(output), naming(output):  # one writer per output; dead runs' temporaries go
        # what is done already: the output (same settings) and complete shards of a killed run
        parts = Path(f"{output}.parts")
        keep_output = check_output(output, settings, overwrite)
        done = set(resume_shards(parts, settings, overwrite))
        if keep_output and not overwrite:
            done |= set(list_names(output))
        names, unstorable = _storable(names)
        todo = [n for n in names if n not in done]

        job = ExtractJob(settings, str(image_root), str(parts), max_pixels)
        if engine == "local":
            from .engines.local import run_local

            errors = run_local(job, net, todo, shard_size, workers, progress)
        else:
            from .engines.ray import run_ray

            errors = run_ray(job, net, todo, shard_size, max(1, workers), address, progress)

        merge(output, parts, settings, keep_output)
        write_errors(output, unstorable + errors)
    return ExtractReport(
        output,
        extracted=len(todo) - len(errors),
        skipped=len(names) - len(todo),
        errors=unstorable + errors,
        seconds=time.perf_counter() - start_time,
        settings=settings,
    )


def _storable(names: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The names HDF5 can store, and ``(name, reason)`` for the others.

    File names that are not valid UTF-8 (read by Python as surrogate escapes) cannot be HDF5
    group names; they are reported as bad images instead of stopping the run.
    """
    good, bad = [], []
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "backslashreplace").decode()
            bad.append((shown, "the file name is not valid UTF-8; rename the file"))
            continue
        good.append(name)
    return good, bad


def check_arguments(workers: int, shard_size: int, engine: str) -> None:
    """Refuse negative workers, a shard size below 1 and an unknown engine (ConfigError)."""
    if workers < 0 or shard_size < 1:
        raise ConfigError("workers must be >= 0 and shard_size >= 1")
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine '{engine}'{closest(engine, ENGINES)}; "
                          f"available: {', '.join(ENGINES)}")  # fmt: skip
