"""Image pairs for structure-from-motion.

The pairs are every pair, a sliding window, the most similar images (retrieval, see
:mod:`keypoints.pipeline.retrieval`), or a text file (hloc's format, one ``name0 name1`` per
line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, ImageNotFoundError
from ..io import atomic_write
from ..io.hloc import list_names
from .images import list_images
from .retrieval import retrieval_pairs

__all__ = [
    "exhaustive_pairs",
    "sequential_pairs",
    "retrieval_pairs",
    "read_pairs",
    "write_pairs",
    "pairs_from",
]


def exhaustive_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair ``(names[i], names[j])``, ``i < j``: n (n - 1) / 2 pairs."""
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def sequential_pairs(names: Sequence[str], window: int) -> list[tuple[str, str]]:
    """Each image with the ``window`` images after it in ``names`` (video or ordered captures)."""
    if window < 1:
        raise ConfigError(f"the sequential window must be >= 1, got {window}")
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 : i + 1 + window]]


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Pairs from a text file, one ``name0 name1`` per line.

    This is hloc's format; blank lines and ``#`` comments are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageNotFoundError(f"{path}: no such pairs file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not a pairs file (a UTF-8 text file, one 'name0 name1' per line)"
        ) from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ConfigError(f"{path}:{number}: expected 'name0 name1', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def write_pairs(pairs: Sequence[tuple[str, str]], path: str | os.PathLike) -> Path:
    """Write ``pairs`` one ``name0 name1`` per line (atomically)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.writelines(f"{a} {b}\n" for a, b in pairs)

    return atomic_write(path, write)


def pairs_from(
    source: str | os.PathLike,
    pairs_file: str | os.PathLike | None = None,
    exhaustive: bool = False,
    sequential: int | None = None,
    retrieval: int | None = None,
    *,
    from_file: bool = True,
    progress: bool = False,
) -> list[tuple[str, str]]:
    """Pairs from exactly one of: a ``pairs_file``, ``exhaustive``, ``sequential``, ``retrieval``.

    ``exhaustive`` and ``sequential`` (window K) pair the image names of ``source`` (a features
    ``.h5``, an image folder, or a text file of paths). ``retrieval`` (K) pairs each image with
    its K most similar ones (:func:`~keypoints.pipeline.retrieval.retrieval_pairs`); it needs a
    features ``.h5`` source. ``from_file=False``: the caller has no pairs file to offer
    (``keypoints pairs``), so the message names only the others. ``progress``: progress bars
    (retrieval).
    """
    chosen = [pairs_file is not None, exhaustive, sequential is not None, retrieval is not None]
    if sum(chosen) != 1:
        offered = ["--pairs FILE"] if from_file else []
        offered += ["--exhaustive", "--sequential K", "--retrieval K"]
        raise ConfigError(f"choose exactly one of {', '.join(offered)}")
    if pairs_file is not None:
        return read_pairs(pairs_file)
    features = str(source).endswith((".h5", ".hdf5"))
    if retrieval is not None:
        if not features:
            raise ConfigError(
                f"--retrieval needs a features .h5, not {os.fspath(source)!r}: run "
                f"`keypoints extract {os.fspath(source)} -o features.h5` first"
            )
        return retrieval_pairs(source, int(retrieval), progress=progress)
    names = list_names(source) if features else list_images(source)[1]
    if exhaustive:
        return exhaustive_pairs(names)
    return sequential_pairs(names, int(sequential))  # type: ignore[arg-type]
