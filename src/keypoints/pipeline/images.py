"""Which images a pipeline stage works on: a folder, a text file of paths, or a list."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, ImageNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "list_images"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff",
                    ".webp", ".gif")  # fmt: skip


def list_images(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Path, list[str]]:
    """The images to extract and the root their names are relative to.

    ``source``: a folder (searched recursively for :data:`IMAGE_EXTENSIONS`, case-insensitive,
    hidden files skipped), a text file with one image path per line (relative paths are relative
    to the text file's folder, absolute ones stay as they are; blank lines and ``#`` comments
    skipped), or a list of paths.
    Returns ``(root, names)``: names are '/'-separated paths relative to ``root``, sorted for
    folders, in the given order otherwise (duplicates dropped).
    """
    if not isinstance(source, (str, os.PathLike)):
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
            try:
                lines = source.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{source}: not a list of image paths (a text file, UTF-8, one path per "
                    "line), nor a folder"
                ) from None
            paths = [
                root / line.strip()  # absolute lines stay absolute
                for line in lines
                if line.strip() and not line.strip().startswith("#")
            ]
            if not paths:
                raise ConfigError(f"{source}: the list of images is empty")
            if not all(p.is_relative_to(root) for p in paths):  # absolute paths elsewhere
                root = Path(os.path.commonpath([root, *(p.parent for p in paths)]))
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
