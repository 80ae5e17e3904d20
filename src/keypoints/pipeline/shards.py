"""Crash-safe storage of batch results (features, matches) in shard files.

Each shard file is completed under a temporary name and renamed into ``<output>.parts/``; the
shards are merged into the output by writing a temporary file that is renamed onto it. A kill at
any moment leaves the output and the complete shards readable. Extraction stores features by
image name; ``match-pairs`` stores matches by hloc pair key, with the same files and rules.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

import h5py

from .._version import __version__
from ..errors import ConfigError, KeypointsError
from ..features import Features
from ..io import atomic_write
from ..io.hloc import list_names, write_features
from .settings import CONFIG_ATTR, ExtractSettings

__all__ = [
    "ShardFiles",
    "ShardWriter",
    "check_output",
    "complete_shards",
    "resume_shards",
    "merge",
    "merge_shards",
    "write_errors",
]

T = TypeVar("T")


def check_output(output: Path, settings: ExtractSettings, overwrite: bool) -> bool:
    """Whether the existing ``output`` is kept (merged into).

    Raises :class:`ConfigError` naming the differing fields when it was written with other
    settings, or without a settings record (hloc, another tool, an older keypoints: its features
    cannot be trusted to be this detector's), unless ``overwrite``: then it is replaced, never
    mixed, and so is a file that is not readable HDF5.
    """
    if not output.exists():
        return False
    if output.is_dir():
        raise ConfigError(f"{output} is a folder; the output must be a .h5 file")
    try:
        with h5py.File(output, "r") as file:
            recorded = file.attrs.get(CONFIG_ATTR)
    except OSError as error:
        if overwrite:
            return False
        raise KeypointsError(
            f"{output} exists but is not a readable HDF5 file ({error}); move it away or pass "
            "--overwrite to replace it"
        ) from None
    if overwrite:
        return recorded is not None and ExtractSettings.from_json(recorded) == settings
    if recorded is None:
        raise ConfigError(
            f"{output} was not written by keypoints extract (it records no extraction settings, "
            "so its features cannot be checked against this detector's); use another output "
            "file, or --overwrite to replace it"
        )
    settings.check_same(recorded, str(output))
    return True


def complete_shards(parts: Path, read: Callable[[h5py.File, Path], list[str] | None]) -> list[str]:
    """What ``read`` finds in the complete shards of an interrupted run.

    ``read(file, path)`` returns the usable names of a shard, or None to remove the shard (it
    may raise to stop the run). Temporary (incomplete) and unreadable shards are removed.
    """
    names: list[str] = []
    if not parts.is_dir():
        return names
    for path in sorted(parts.iterdir()):
        if path.suffix != ".h5":
            path.unlink()
            continue
        try:
            with h5py.File(path, "r") as file:
                found = read(file, path)
        except OSError:
            found = None
        if found is None:
            path.unlink()
            continue
        names.extend(found)
    return names


def resume_shards(parts: Path, settings: ExtractSettings, overwrite: bool) -> list[str]:
    """Names in the complete shards of an interrupted run with the same settings.

    Temporary (incomplete) and unreadable shards are removed; shards of other settings raise
    :class:`ConfigError` naming the differing fields, unless ``overwrite`` (then removed).
    """

    def read(file: h5py.File, path: Path) -> list[str] | None:
        recorded = file.attrs.get(CONFIG_ATTR)
        if recorded is None or ExtractSettings.from_json(recorded) != settings:
            if not overwrite:
                settings.check_same(recorded, f"the interrupted run's shard {path}")
            return None
        return list_names(file)

    return complete_shards(parts, read)


class ShardFiles(Generic[T]):
    """Writes items into shard files of ``shard_size`` items.

    Each shard records ``attrs`` (the settings of the run) at its root; ``write(file, name,
    item)`` stores one item under ``name``. Each shard is completed under a temporary name and
    renamed into ``parts``.
    """

    def __init__(self, parts: Path, attrs: Mapping[str, str], shard_size: int,
                 write: Callable[[h5py.File, str, T], None]) -> None:  # fmt: skip
        """Prepare to write shards of ``shard_size`` items into ``parts``."""
        self.parts, self.shard_size = parts, shard_size
        self.attrs, self.write = dict(attrs), write
        self.file: h5py.File | None = None
        self.count = 0
        self.broken = False

    def add(self, name: str, item: T) -> None:
        """Write ``item`` under ``name``; a full shard is closed and renamed."""
        if self.file is None:
            self.parts.mkdir(parents=True, exist_ok=True)
            # unique across processes and machines (Ray actors write side by side)
            stem = f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
            self.final = self.parts / f"{stem}.h5"
            self.tmp = self.parts / f"{stem}.h5.tmp"
            self.file = h5py.File(self.tmp, "w")
            self.file.attrs.update(self.attrs)
        try:
            self.write(self.file, name, item)
        except BaseException:  # a full disk, a kill: never leave a half-written item behind
            try:
                if name in self.file:
                    del self.file[name]
            except Exception:  # noqa: BLE001 - the shard is beyond repair: dropped at close
                self.broken = True
            raise
        self.count += 1
        if self.count >= self.shard_size:
            self.close()

    def close(self) -> None:
        """Complete the current shard: flush, fsync, rename into place."""
        if self.file is not None:
            file, broken = self.file, self.broken
            self.file, self.count, self.broken = None, 0, False
            try:
                file.close()
                if broken:  # dropped; the error that broke it is on its way to the caller
                    self.tmp.unlink(missing_ok=True)
                    return
                with open(self.tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(self.tmp, self.final)
            except BaseException:  # a shard that cannot be completed is dropped, never kept
                self.tmp.unlink(missing_ok=True)
                raise

    def __enter__(self) -> ShardFiles[T]:
        """Return the writer itself."""
        return self

    def __exit__(self, *exc) -> None:
        """Complete the current shard, also on errors and Ctrl-C."""
        self.close()  # also on errors and Ctrl-C: what is complete is kept


class ShardWriter(ShardFiles[Features]):
    """Writes features into shard files of ``shard_size`` images, recording ``settings``."""

    def __init__(self, parts: Path, settings: ExtractSettings, shard_size: int) -> None:
        """Prepare to write shards of ``shard_size`` images with ``settings`` into ``parts``."""
        half = settings.half_descriptors

        def write(file: h5py.File, name: str, features: Features) -> None:
            write_features(file, name, features, half)

        super().__init__(parts, {CONFIG_ATTR: settings.to_json()}, shard_size, write)


def merge(output: Path, parts: Path, settings: ExtractSettings, keep_output: bool) -> None:
    """Merge the output (if kept) and the shards of features into the output.

    See :func:`merge_shards`.
    """
    merge_shards(output, parts, {CONFIG_ATTR: settings.to_json()}, keep_output, list_names)


def merge_shards(output: Path, parts: Path, attrs: Mapping[str, str], keep_output: bool,
                 entries: Callable[[h5py.File], Iterable[str]]) -> None:  # fmt: skip
    """Merge the output (if kept) and the shards into the output, recording ``attrs``.

    Output (if kept) + the ``entries(shard)`` of each shard, in the order the shards were
    written (a later one replaces an entry of the same name) -> a temporary file renamed onto
    the output; then the shards are removed. A kill at any point leaves the output and the
    shards intact.
    """
    shards = sorted(parts.glob("shard-*.h5")) if parts.is_dir() else []
    if not shards and keep_output:
        return

    def write(tmp: str) -> None:
        if keep_output:
            shutil.copyfile(output, tmp)
        with h5py.File(tmp, "a" if keep_output else "w") as merged:
            merged.attrs.update(attrs)
            merged.attrs["keypoints_version"] = __version__
            for shard in shards:
                with h5py.File(shard, "r") as part:
                    for name in entries(part):
                        if name in merged:
                            del merged[name]
                        parent = name.rpartition("/")[0]
                        if parent:
                            merged.require_group(parent)
                        part.copy(part[name], merged, name=name)

    atomic_write(output, write)
    shutil.rmtree(parts, ignore_errors=True)


def write_errors(output: Path, errors: list[tuple[str, str]]) -> None:
    """Write ``<output>.errors.txt``: one ``name<TAB>reason`` line per bad image of this run.

    The file is removed when there were none.
    """
    path = Path(f"{output}.errors.txt")
    if not errors:
        path.unlink(missing_ok=True)
        return

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.writelines(f"{name}\t{reason}\n" for name, reason in errors)

    atomic_write(path, write)
