"""Image pairs for structure-from-motion.

The pairs are every pair, a sliding window, the most similar images (retrieval, see
:mod:`keypoints.pipeline.retrieval`), the images taken near each other (EXIF GPS), or a text
file (hloc's format, one ``name0 name1`` per line).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ImageNotFoundError
from ..io import atomic_write
from ..io.hloc import list_names
from .images import list_images
from .retrieval import retrieval_pairs

__all__ = [
    "exhaustive_pairs",
    "sequential_pairs",
    "retrieval_pairs",
    "gps_pairs",
    "gps_position",
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


#: the mean Earth radius in metres (IUGG), for the haversine distance
EARTH_RADIUS_M = 6_371_008.8
_GPS_IFD = 0x8825  # EXIF's GPSInfo: 1 LatitudeRef, 2 Latitude, 3 LongitudeRef, 4 Longitude


def gps_position(path: str | os.PathLike) -> tuple[float, float] | None:
    """The (latitude, longitude) in degrees in an image's EXIF GPS tags, or None without them."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            gps = image.getexif().get_ifd(_GPS_IFD)
        latitude = _degrees(gps[2], gps.get(1, "N"), "S")
        longitude = _degrees(gps[4], gps.get(3, "E"), "W")
    except (OSError, SyntaxError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None  # not an image, no GPS tags, or malformed ones
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return latitude, longitude


def _degrees(value, reference, negative: str) -> float:
    """EXIF's (degrees, minutes, seconds) rationals as signed degrees."""
    d, m, s = (float(v) for v in value)
    if isinstance(reference, bytes):
        reference = reference.decode("ascii", "replace")
    sign = -1.0 if str(reference).strip("\x00 ").upper() == negative else 1.0
    result = sign * (d + m / 60 + s / 3600)
    if not math.isfinite(result):
        raise ValueError("not a finite angle")
    return result


def gps_pairs(source: str | os.PathLike, radius: float) -> list[tuple[str, str]]:
    """Every pair of images of ``source`` taken within ``radius`` metres (EXIF GPS).

    ``source``: an image folder or a text file of paths (the names are those ``keypoints
    extract`` gives them). The distance is the haversine great-circle distance. Images without
    GPS tags get no pairs (a warning names them); none with GPS is a :class:`ConfigError`.
    """
    if not radius > 0:
        raise ConfigError(f"the GPS radius must be > 0 metres, got {radius}")
    root, names = list_images(source)
    positions = {name: gps_position(root / name) for name in names}
    located = [name for name in names if positions[name] is not None]
    if not located:
        raise ConfigError(f"{source}: no image has EXIF GPS tags; choose another way to pair")
    missing = [name for name in names if positions[name] is None]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        warnings.warn(f"{len(missing)} image(s) without EXIF GPS get no pairs: {shown}",
                      stacklevel=2)  # fmt: skip
    radians = np.radians(np.array([positions[n] for n in located], np.float64))
    latitude, longitude = radians[:, 0], radians[:, 1]
    pairs = []
    for i, name in enumerate(located[:-1]):  # a row at a time: memory linear in the images
        # haversine: 2 R asin(sqrt(sin^2(dlat / 2) + cos lat0 cos lat1 sin^2(dlon / 2)))
        h = (
            np.sin((latitude[i + 1 :] - latitude[i]) / 2) ** 2
            + np.cos(latitude[i])
            * np.cos(latitude[i + 1 :])
            * np.sin((longitude[i + 1 :] - longitude[i]) / 2) ** 2
        )
        distance = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
        pairs += [(name, located[i + 1 + j]) for j in np.flatnonzero(distance <= radius)]
    return pairs


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
    gps: float | None = None,
    from_file: bool = True,
    progress: bool = False,
) -> list[tuple[str, str]]:
    """Pairs from exactly one of a ``pairs_file``, ``exhaustive``, ``sequential``, ``retrieval``.

    ``exhaustive`` and ``sequential`` (window K) pair the image names of ``source`` (a features
    ``.h5``, an image folder, or a text file of paths). ``retrieval`` (K) pairs each image with
    its K most similar ones (:func:`~keypoints.pipeline.retrieval.retrieval_pairs`); it needs a
    features ``.h5`` source. ``gps`` (a radius in metres; ``keypoints pairs`` only) pairs the
    images taken within it (:func:`gps_pairs`); it needs the images. ``from_file=False``: the
    caller is ``keypoints pairs``: the message names its options (no pairs file; retrieval
    and GPS), not those of ``match-pairs``. ``progress``: progress bars (retrieval).
    """
    chosen = [pairs_file is not None, exhaustive, sequential is not None, retrieval is not None,
              gps is not None]  # fmt: skip
    if sum(chosen) != 1:
        # only the options the calling command has: match-pairs (from_file) has no retrieval
        # or GPS options
        offered = ["--pairs FILE"] if from_file else []
        offered += ["--exhaustive", "--sequential K"]
        offered += [] if from_file else ["--retrieval K", "--gps RADIUS_M"]
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
    if gps is not None:
        if features:
            raise ConfigError(
                f"--gps reads the images' EXIF: give their folder (or a list of paths), not "
                f"the features file {os.fspath(source)!r}"
            )
        return gps_pairs(source, float(gps))
    names = list_names(source) if features else list_images(source)[1]
    if exhaustive:
        return exhaustive_pairs(names)
    return sequential_pairs(names, int(sequential))  # type: ignore[arg-type]
