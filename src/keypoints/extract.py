"""Bulk feature extraction into one hloc-compatible HDF5 file: resumable, crash-safe, bounded
memory, decoding in background threads while the model computes.

Crash safety. An HDF5 file open for writing can be left unreadable by a kill, so the final file
is never opened for writing. Results go to shard files in ``<output>.parts/``: each shard is
written under a temporary name and renamed once complete (a kill loses at most the shard being
written). At the end the existing output (if any) and the shards are merged into a temporary
file that is renamed onto the output, then the shards are removed. A rerun after a kill skips
the images already in the output or in complete shards, so it finishes the job with the same
results as an uninterrupted run (detection of one image does not depend on the others).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from .detection import Prepared, prepare, run_prepared
from .errors import ConfigError, ImageNotFoundError, KeypointsError, closest
from .image import DEFAULT_MAX_PIXELS, to_array
from .io import atomic_write
from .io.hloc import list_names, write_features
from .models.registry import DEFAULT_MODEL, load_model

__all__ = ["IMAGE_EXTENSIONS", "list_images", "extract", "extract_report", "ExtractReport"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff",
                    ".webp", ".gif")  # fmt: skip
CONFIG_ATTR = "keypoints_config"


def list_images(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Path, list[str]]:
    """The images to extract and the root their names are relative to.

    ``source``: a folder (searched recursively for :data:`IMAGE_EXTENSIONS`, case-insensitive,
    hidden files skipped), a text file with one image path per line (relative paths are relative
    to the text file's folder; blank lines and ``#`` comments skipped), or a list of paths.
    Returns ``(root, names)``: names are '/'-separated paths relative to ``root``, sorted for
    folders, in the given order otherwise (duplicates dropped).
    """
    if isinstance(source, (list, tuple)):
        paths = [Path(p).absolute() for p in source]
        if not paths:
            raise ConfigError("no images given")
        root = Path(os.path.commonpath([p.parent for p in paths]))
    else:
        source = Path(source)
        if not source.exists():
            raise ImageNotFoundError(f"{source}: no such folder or file")
        if source.is_dir():
            root = source
            paths = sorted(
                p
                for p in source.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(source).parts)
            )
            if not paths:
                raise ConfigError(
                    f"{source}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})"
                )
        else:
            root = source.parent
            lines = source.read_text().splitlines()
            paths = [
                root / line.strip()
                for line in lines
                if line.strip() and not line.strip().startswith("#")
            ]
            if not paths:
                raise ConfigError(f"{source}: the list of images is empty")
    names, seen = [], set()
    for path in paths:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix().lstrip("/")
        if name not in seen:
            seen.add(name)
            names.append(name)
    return root, names


@dataclass
class ExtractReport:
    """What :func:`extract_report` did: the output file, how many images were extracted in
    this run, skipped (already present), and the bad ones with the reason."""

    output: Path
    extracted: int = 0
    skipped: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def extract(
    images,
    output: str | os.PathLike,
    model: str | os.PathLike = DEFAULT_MODEL,
    **kwargs,
) -> Path:
    """Extract features of many images into ``output`` (hloc's HDF5 layout, see
    :mod:`keypoints.io.hloc`). Returns the output path; see :func:`extract_report` for the
    arguments and behaviour."""
    return extract_report(images, output, model, **kwargs).output


def extract_report(
    images,
    output: str | os.PathLike,
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    resize: int | Sequence[int] | None = 1024,
    half_descriptors: bool = False,
    workers: int = 2,
    overwrite: bool = False,
    shard_size: int = 32,
    device: str | None = None,
    backend: str = "auto",
    precision: str = "fp32",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    root: str | os.PathLike | None = None,
    engine: str = "local",
    address: str | None = None,
    **options,
) -> ExtractReport:
    """Extract and describe keypoints of many images into one HDF5 file.

    Args:
        images: a folder, a text file of paths, or a list of paths (see :func:`list_images`).
        output: the ``.h5`` file. Images already in it (or in shards of an interrupted run) are
            skipped unless ``overwrite``; it must have been written with the same model and
            options (recorded in its root attribute ``keypoints_config``).
        model: a model name (:func:`keypoints.list_models`) or checkpoint.
        resize: longest side (default 1024, never upsampling), ``(height, width)``, or None.
        half_descriptors: store descriptors as float16 (keypoints always stay float32).
        workers: background threads decoding and resizing images while the model computes
            (0: everything in this thread).
        overwrite: recompute images that are already in the output.
        shard_size: images per shard (at most this much work is lost by a kill).
        device, backend, precision, max_pixels: as in :func:`keypoints.detect`.
        progress: show a progress bar (images/s and ETA).
        root: names are paths relative to it (default: the folder, or the text file's folder).
        engine: ``"local"`` (this process) or ``"ray"``: a Ray Data pipeline, one shard per
            block, on a local Ray instance or the cluster at ``address`` (or ``RAY_ADDRESS``);
            ``workers`` is then the number of model actors. Shards must be on storage all
            nodes can write (the output's folder). Needs ``pip install "keypoints[ray]"``.
        **options: model options (``max_keypoints``, ``threshold``, ``nms_radius``).

    Returns:
        An :class:`ExtractReport`. Bad images (missing, unreadable, truncated, too large) do not
        stop the run: they are listed in the report and in ``<output>.errors.txt``.
    """
    start_time = time.perf_counter()
    output = Path(output)
    if workers < 0 or shard_size < 1:
        raise ConfigError("workers must be >= 0 and shard_size >= 1")
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown engine '{engine}'{closest(engine, ('local', 'ray'))}; "
                          "available: local, ray")  # fmt: skip
    image_root, names = list_images(images)
    if root is not None:
        image_root = Path(root)
    options = {k: v for k, v in options.items() if v is not None}
    net = load_model(model, device, backend, precision)
    if options:
        net.config.replace(**options)  # validate once, before any work
    config = json.dumps(
        {
            "model": str(getattr(net, "name", model))
            if not isinstance(model, (str, os.PathLike))
            else str(model),
            "options": options,
            "resize": resize,
            "half_descriptors": half_descriptors,
            "precision": precision,
        },
        sort_keys=True,
    )
    parts = Path(f"{output}.parts")
    keep_output = _check_output(output, config, overwrite)
    done = set(_resume_shards(parts, config))
    if keep_output and not overwrite:
        done |= set(list_names(output))
    todo = [n for n in names if n not in done]
    report = ExtractReport(output, skipped=len(names) - len(todo))

    settings = _Settings(
        model=json.loads(config)["model"], device=device, backend=backend, precision=precision,
        options=options, resize=resize, half_descriptors=half_descriptors,
        max_pixels=max_pixels, root=str(image_root), parts=str(parts), config=config,
    )  # fmt: skip
    if engine == "local":
        errors = _Extractor(settings, net).run(todo, shard_size, workers, progress)
    else:
        from .extract_ray import run_ray

        errors = run_ray(settings, todo, shard_size, max(1, workers), address, progress)
    report.errors = errors
    report.extracted = len(todo) - len(errors)

    _merge(output, parts, config, keep_output)
    _write_errors(output, report.errors)
    report.seconds = time.perf_counter() - start_time
    return report


@dataclass(frozen=True)
class _Settings:
    """Everything a worker (a thread here or a Ray actor elsewhere) needs; plain values."""

    model: str
    device: str | None
    backend: str
    precision: str
    options: dict
    resize: int | Sequence[int] | None
    half_descriptors: bool
    max_pixels: int | None
    root: str
    parts: str
    config: str


class _Extractor:
    """Holds a loaded model; extracts lists of image names into shard files."""

    def __init__(self, settings: _Settings, net=None) -> None:
        self.settings = settings
        if net is None:
            net = load_model(settings.model, settings.device, settings.backend,
                             settings.precision)  # fmt: skip
        self.net = net

    def load(self, name: str) -> Prepared:
        s = self.settings
        array = to_array(str(Path(s.root) / name), max_pixels=s.max_pixels)
        return prepare(self.net, array, s.resize)

    def run(self, names: list[str], shard_size: int, workers: int = 0,
            progress: bool = False) -> list[tuple[str, str]]:  # fmt: skip
        """Extract ``names`` (decoding in ``workers`` threads) into shards of ``shard_size``
        images; returns the bad images with the reason."""
        s, errors = self.settings, []
        with _ShardWriter(Path(s.parts), s.config, shard_size) as writer:
            for name, item in _progress(_prefetch(self.load, names, workers), len(names),
                                        progress):  # fmt: skip
                if isinstance(item, BaseException):
                    errors.append((name, _reason(item)))
                    continue
                try:
                    features = run_prepared(self.net, [item], s.options)[0]
                except KeypointsError as error:
                    errors.append((name, _reason(error)))
                    continue
                writer.add(name, features, s.half_descriptors)
        return errors


# steps -----------------------------------------------------------------------------------------
def _check_output(output: Path, config: str, overwrite: bool) -> bool:
    """Whether the existing output is kept (merged into); raises when it was written with other
    settings and ``overwrite`` is off."""
    if not output.exists():
        return False
    try:
        with h5py.File(output, "r") as file:
            previous = file.attrs.get(CONFIG_ATTR)
    except OSError as error:
        raise KeypointsError(
            f"{output} exists but is not a readable HDF5 file ({error}); move it away or pass "
            "--overwrite"
        ) from None
    if previous is None or previous == config:
        return True
    if overwrite:
        return False  # a fresh file: do not mix settings
    raise ConfigError(
        f"{output} was written with other settings ({previous}); now {config}. Use another "
        "output file, or --overwrite to replace it"
    )


def _resume_shards(parts: Path, config: str) -> list[str]:
    """Names in the complete shards of an interrupted run with the same settings; temporary
    (incomplete) shards and shards of other settings are removed."""
    names: list[str] = []
    if not parts.is_dir():
        return names
    for path in sorted(parts.iterdir()):
        if path.suffix != ".h5":
            path.unlink()
            continue
        try:
            with h5py.File(path, "r") as file:
                if file.attrs.get(CONFIG_ATTR) != config:
                    raise OSError("other settings")
                names.extend(list_names(file))
        except OSError:
            path.unlink()
    return names


class _ShardWriter:
    """Writes features into shard files of ``shard_size`` images, each completed under a
    temporary name and renamed into ``parts``."""

    def __init__(self, parts: Path, config: str, shard_size: int) -> None:
        self.parts, self.config, self.shard_size = parts, config, shard_size
        self.file: h5py.File | None = None
        self.count = 0

    def add(self, name: str, features, half_descriptors: bool) -> None:
        if self.file is None:
            self.parts.mkdir(parents=True, exist_ok=True)
            # unique across processes and machines (Ray actors write side by side)
            stem = f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
            self.final = self.parts / f"{stem}.h5"
            self.tmp = self.parts / f"{stem}.h5.tmp"
            self.file = h5py.File(self.tmp, "w")
            self.file.attrs[CONFIG_ATTR] = self.config
        write_features(self.file, name, features, half_descriptors)
        self.count += 1
        if self.count >= self.shard_size:
            self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.final)
        self.file, self.count = None, 0

    def __enter__(self) -> _ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # also on errors and Ctrl-C: what is complete is kept


def _merge(output: Path, parts: Path, config: str, keep_output: bool) -> None:
    """Output (if kept) + shards -> a temporary file renamed onto the output; then the shards
    are removed. A kill at any point leaves the output and the shards intact."""
    shards = sorted(parts.glob("shard-*.h5")) if parts.is_dir() else []
    if not shards and keep_output:
        return

    def write(tmp: str) -> None:
        if keep_output:
            shutil.copyfile(output, tmp)
        with h5py.File(tmp, "a" if keep_output else "w") as merged:
            merged.attrs[CONFIG_ATTR] = config
            merged.attrs["keypoints_version"] = _version()
            for shard in shards:
                with h5py.File(shard, "r") as part:
                    for name in list_names(part):
                        if name in merged:
                            del merged[name]
                        parent = name.rpartition("/")[0]
                        if parent:
                            merged.require_group(parent)
                        part.copy(part[name], merged, name=name)

    atomic_write(output, write)
    shutil.rmtree(parts, ignore_errors=True)


def _write_errors(output: Path, errors: list[tuple[str, str]]) -> None:
    """``<output>.errors.txt``: one ``name<TAB>reason`` line per bad image of this run
    (removed when there were none)."""
    path = Path(f"{output}.errors.txt")
    if not errors:
        path.unlink(missing_ok=True)
        return

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.writelines(f"{name}\t{reason}\n" for name, reason in errors)

    atomic_write(path, write)


def _prefetch(load: Callable[[str], Prepared], names: list[str], workers: int) -> Iterator:
    """``(name, load(name) or the exception)`` in order, loading up to ``2 * workers`` images
    ahead in background threads."""

    def safe(name: str):
        try:
            return load(name)
        except (KeypointsError, OSError, ValueError) as error:
            return error

    if workers == 0:
        for name in names:
            yield name, safe(name)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="keypoints-load") as pool:
        ahead = 2 * workers
        futures = [pool.submit(safe, n) for n in names[:ahead]]
        for i, name in enumerate(names):
            if i + ahead < len(names):
                futures.append(pool.submit(safe, names[i + ahead]))
            yield name, futures[i].result()
            futures[i] = None  # drop the result as soon as it is consumed


def _progress(items: Iterator, total: int, enabled: bool) -> Iterator:
    from tqdm import tqdm

    yield from tqdm(items, total=total, unit="img", disable=not enabled or total == 0,
                    desc="extract", dynamic_ncols=True)  # fmt: skip


def _reason(error: BaseException) -> str:
    if isinstance(error, KeypointsError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _version() -> str:
    from . import __version__

    return __version__
