"""Import features and matches (hloc layout) into a COLMAP database with pycolmap.

The database is ready for ``pycolmap.incremental_mapping``. pycolmap is optional:
``pip install "keypoints[colmap]"``.

COLMAP puts pixel centres at half-integers (the top-left pixel spans [0, 1]), we put them at
integers: keypoints get +0.5 here, the one place the conventions meet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError, ImageNotFoundError, KeypointsError
from .files import atomic_write, naming
from .hloc import (
    check_pair_keys,
    dataset,
    list_names,
    open_h5,
    read_matches,
    text_attribute,
)
from .locks import exclusive

__all__ = ["import_colmap", "ColmapImport", "matched_pairs", "colmap_log_level"]

#: COLMAP's prior focal length when nothing better is known: 1.2 x the longest side
DEFAULT_FOCAL_FACTOR = 1.2


@dataclass
class ColmapImport:
    """Counts of what :func:`import_colmap` wrote."""

    database: Path
    images: int
    keypoints: int
    matched_pairs: int
    matches: int
    verified_pairs: int


@contextlib.contextmanager
def colmap_log_level(pycolmap):
    """COLMAP's own INFO lines (its SIFT matcher's set-up, timers) only with ``-v``.

    The geometric verification runs inside COLMAP's feature-matching controller, which logs
    "Creating SIFT CPU feature matcher" whatever the features are; our own summary says what
    was done. Warnings and errors still print.
    """
    verbose = logging.getLogger("keypoints").getEffectiveLevel() <= logging.INFO
    previous = pycolmap.logging.minloglevel
    if not verbose:
        pycolmap.logging.minloglevel = max(previous, 1)  # glog: 0 INFO, 1 WARNING
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def _pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise ConfigError(
            "the COLMAP import needs pycolmap: pip install 'keypoints[colmap]'"
        ) from None
    return pycolmap


def matched_pairs(matches: str | os.PathLike, names: list[str]) -> list[tuple[str, str]]:
    """The ``(name0, name1)`` pairs stored in a matches file, as image ``names``.

    The file holds hloc's ``name0/name1`` groups with '/' inside names replaced by '-'; the
    names recorded in a group (``keypoints match-pairs`` records them) are used, else the key
    is mapped back to ``names`` (refused when two names share a key).
    """
    known = set(names)
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(name.replace("/", "-"), name)
    pairs, keys_checked = [], False
    with open_h5(matches, "matches file") as file:
        for key0, group in file.items():
            if not isinstance(group, h5py.Group):
                continue
            for key1, pair in group.items():
                if not (isinstance(pair, h5py.Group) and "matches0" in pair):
                    continue
                first, second = (text_attribute(pair.attrs.get(k)) for k in ("name0", "name1"))
                if first in known and second in known:
                    pairs.append((first, second))
                    continue
                if key0 not in by_key or key1 not in by_key:
                    raise KeypointsError(f"{matches}: pair {key0}/{key1} names unknown images")
                if not keys_checked:  # a key stands for a name only when no two names share it
                    check_pair_keys(names, f"{matches} (pairs recorded without names)")
                    keys_checked = True
                pairs.append((by_key[key0], by_key[key1]))
    return pairs


def import_colmap(
    features: str | os.PathLike,
    matches: str | os.PathLike,
    database: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
    pairs: list[tuple[str, str]] | None = None,
    camera_model: str = "SIMPLE_RADIAL",
    single_camera: bool = False,
    verify: bool = True,
    overwrite: bool = False,
) -> ColmapImport:
    """Write cameras, images, keypoints and matches into a new COLMAP database.

    Args:
        features: features file (``keypoints extract`` or hloc).
        matches: matches file (``keypoints match-pairs`` or hloc).
        database: the ``.db`` to create (refused when it exists, unless ``overwrite``).
        image_dir: the images' root folder. When given, COLMAP's own importer reads the image
            files (cameras from the EXIF focal length when present, else 1.2 x the longest
            side); without it, one camera per image from ``image_size`` with that default focal
            length.
        pairs: the pairs to import (default: every pair in ``matches``).
        camera_model: COLMAP camera model for cameras made from ``image_size``.
        single_camera: one camera shared by all images (a video or a single camera; all
            images must have the same size).
        verify: run COLMAP's geometric verification (two-view geometries), which
            ``pycolmap.incremental_mapping`` needs.
        overwrite: replace an existing database.

    Returns:
        :class:`ColmapImport` with the counts read back from the database.
    """
    pycolmap = _pycolmap()
    features, matches, database = Path(features), Path(matches), Path(database)
    if database.exists() and not overwrite:
        raise ConfigError(f"{database} exists; pass --overwrite to replace it")
    if database.is_dir():
        raise ConfigError(f"{database} is a folder; the database must be a file")
    if image_dir is not None and not Path(image_dir).is_dir():
        raise ImageNotFoundError(f"{image_dir}: no such image folder")
    with open_h5(features, "features file") as file:
        names = list_names(file)
    if pairs is None:
        chosen = matched_pairs(matches, names)
    else:
        with open_h5(matches, "matches file"):
            chosen = [(str(a), str(b)) for a, b in pairs]
    check_pair_keys({n for pair in chosen for n in pair}, "the pairs")
    unknown = sorted({n for pair in chosen for n in pair} - set(names))
    if unknown:
        raise KeypointsError(f"{len(unknown)} image(s) of the pairs are not in {features}: "
                             f"{', '.join(unknown[:5])}")  # fmt: skip

    def build(tmp: str) -> None:
        with colmap_log_level(pycolmap):
            _build(tmp)

    def _build(tmp: str) -> None:
        # 1. cameras and images
        if image_dir is not None:
            pycolmap.Database.open(tmp).close()  # the importer needs an existing database
            mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
            pycolmap.import_images(tmp, image_dir, camera_mode=mode, image_names=names)
        handle = pycolmap.Database.open(tmp)
        try:
            # 2. keypoints, 3. matches (every index checked against the keypoint counts)
            cameras = _Cameras(pycolmap, handle, camera_model, single_camera)
            ids, counts = _write_images(handle, features, names, cameras, image_dir)
            totals.append(_write_matches(handle, matches, chosen, ids, counts))
        finally:
            handle.close()

        # 4. geometric verification (COLMAP's two-view geometries)
        if verify and chosen:
            with tempfile.TemporaryDirectory() as folder:
                listing = Path(folder) / "pairs.txt"
                listing.write_text("".join(f"{a} {b}\n" for a, b in chosen))
                options = pycolmap.TwoViewGeometryOptions()
                options.ransac.random_seed = 0  # the same matches give the same geometries
                pycolmap.verify_matches(tmp, listing, options)

    # built under a temporary name, renamed at the end: an existing database is replaced only by
    # a complete one, and a failed or killed import leaves nothing behind (the next run removes
    # a killed one's temporary file)
    totals: list[int] = []
    with exclusive(database), naming(database):
        atomic_write(database, build)
    return _counts(pycolmap, database, totals[0])


class _Cameras:
    """Cameras made from image sizes with COLMAP's default focal length.

    One camera per image, or one shared by all with ``single``.
    """

    def __init__(self, pycolmap, handle, model: str, single: bool) -> None:
        self.pycolmap, self.handle, self.model, self.single = pycolmap, handle, model, single
        self.ids: dict[tuple[int, int], int] = {}

    def for_image(self, name: str, size: tuple[int, int]) -> int:
        """The camera id of image ``name`` of ``size`` = (width, height)."""
        if self.single and self.ids and size not in self.ids:
            other = next(iter(self.ids))
            raise ConfigError(
                f"single_camera: {name} is {size[0]}x{size[1]}, other images are "
                f"{other[0]}x{other[1]}"
            )
        if size not in self.ids or not self.single:
            self.ids[size] = _write_camera(self.pycolmap, self.handle, size, self.model)
        return self.ids[size]


def _write_images(handle, features: Path, names: list[str], cameras: _Cameras,
                  image_dir) -> tuple[dict[str, int], dict[str, int]]:  # fmt: skip
    """Write the images (unless COLMAP's importer did) and their keypoints.

    Returns their database ids and keypoint counts.
    """
    ids, counts = {}, {}
    with h5py.File(features, "r") as file:
        for name in names:
            group = file[name]
            assert isinstance(group, h5py.Group)  # list_names found it as a group
            if image_dir is None:
                width, height = (int(v) for v in dataset(group, "image_size"))
                camera = cameras.for_image(name, (width, height))
                image = cameras.pycolmap.Image(name=name, camera_id=camera)
                ids[name] = handle.write_image(image)
            else:
                image = handle.read_image_with_name(name)
                if image is None:
                    raise ImageNotFoundError(f"{name} was not found in {image_dir}")
                ids[name] = image.image_id
            # keypoints in COLMAP's convention (pixel centres at +0.5)
            keypoints = dataset(group, "keypoints").astype(np.float32) + 0.5
            if keypoints.ndim != 2 or keypoints.shape[1] != 2 or not np.isfinite(keypoints).all():
                raise KeypointsError(
                    f"{features}: {name}/keypoints must be finite (N, 2) coordinates, not "
                    f"{keypoints.dtype} of shape {keypoints.shape} with non-finite values"
                )
            handle.write_keypoints(ids[name], keypoints)
            counts[name] = len(keypoints)
    return ids, counts


def _write_matches(handle, matches: Path, pairs, ids: dict[str, int],
                   counts: dict[str, int]) -> int:  # fmt: skip
    """The matches of ``pairs``, each index checked against the keypoints; their total count."""
    total = 0
    with h5py.File(matches, "r") as file:
        for name0, name1 in pairs:
            size = (counts[name0], counts[name1])
            pair_matches = read_matches(file, name0, name1, size).astype(np.uint32)
            handle.write_matches(ids[name0], ids[name1], pair_matches)
            total += len(pair_matches)
    return total


def _counts(pycolmap, database: Path, total: int) -> ColmapImport:
    """What the database holds, read back from it."""
    handle = pycolmap.Database.open(database)
    try:
        return ColmapImport(
            database=database,
            images=handle.num_images(),
            keypoints=handle.num_keypoints(),
            matched_pairs=handle.num_matched_image_pairs(),
            matches=total,
            verified_pairs=handle.num_verified_image_pairs(),
        )
    finally:
        handle.close()


def _write_camera(pycolmap, database, size: tuple[int, int], model: str) -> int:
    """A camera of ``size`` = (width, height) with COLMAP's default focal length."""
    width, height = size
    focal = DEFAULT_FOCAL_FACTOR * max(width, height)
    camera = pycolmap.Camera.create_from_model_name(0, model, focal, width, height)
    camera.has_prior_focal_length = False
    return database.write_camera(camera)
