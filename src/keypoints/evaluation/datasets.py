"""Readers for homography datasets, in the two layouts found in the wild.

- HPatches (Balntas et al. 2017): ``<seq>/1.ppm .. 6.ppm`` and ``H_1_2 .. H_1_6``; sequences
  named ``i_*`` change illumination, ``v_*`` viewpoint.
- Oxford affine (Mikolajczyk et al. 2005): ``<seq>/img1.ppm|pgm .. img6`` and
  ``H1to2p .. H1to6p``.

Each homography maps pixels of image 1 to image k (``x_k ~ H x_1``), pixel centres at integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError

__all__ = ["Pair", "Sequence", "load_dataset"]

_EXTENSIONS = (".ppm", ".pgm", ".png", ".jpg", ".jpeg")
# What changes along each Oxford sequence (Mikolajczyk et al., IJCV 2005): graf and wall change
# viewpoint, bark and boat zoom and rotate, the rest are photometric; others count as viewpoint
_OXFORD_SUBSETS = {
    "graf": "viewpoint",
    "wall": "viewpoint",
    "bark": "zoom+rotation",
    "boat": "zoom+rotation",
    "leuven": "illumination",
    "bikes": "blur",
    "trees": "blur",
    "ubc": "compression",
}


@dataclass
class Pair:
    """Image 1 and image k of a sequence, with the ground-truth homography from 1 to k."""

    sequence: str
    subset: str
    index: int
    path0: Path
    path1: Path
    homography: np.ndarray


@dataclass
class Sequence:
    """One sequence: its name, subset, reference image (image 1) and its pairs."""

    name: str
    subset: str
    reference: Path
    pairs: list[Pair] = field(default_factory=list)


def _read_homography(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"homography file '{path}' is missing")
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise DatasetError(f"'{path}' is not a 3x3 text matrix ({exc})") from None
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise DatasetError(f"'{path}' is not a 3x3 matrix of finite numbers")
    # the metrics warp both ways: a singular (or nearly singular) matrix has no inverse
    if np.linalg.cond(matrix) > 1e12:
        raise DatasetError(f"'{path}' is singular (not invertible): not a homography")
    return matrix


def _image(folder: Path, stem: str) -> Path | None:
    return next(
        (folder / f"{stem}{e}" for e in _EXTENSIONS if (folder / f"{stem}{e}").is_file()), None
    )


def _sequence(folder: Path) -> Sequence | None:
    """Read one sequence folder, or None when it has neither layout."""
    if _image(folder, "1") is not None:  # HPatches
        stem, homography = "{}", "H_1_{}"
        subset = {"i": "illumination", "v": "viewpoint"}.get(folder.name[:1], "other")
    elif _image(folder, "img1") is not None:  # Oxford
        stem, homography = "img{}", "H1to{}p"
        subset = _OXFORD_SUBSETS.get(folder.name, "viewpoint")
    else:
        return None
    reference = _image(folder, stem.format(1))
    if reference is None:
        raise DatasetError(f"image '{folder / stem.format(1)}' (.ppm/.pgm/...) is missing")
    seq = Sequence(folder.name, subset, reference)
    for k in range(2, 100):
        image = _image(folder, stem.format(k))
        h_path = folder / homography.format(k)
        if image is None and not h_path.exists():
            break
        if image is None:
            raise DatasetError(f"image '{folder / stem.format(k)}' (.ppm/.pgm/...) is missing")
        seq.pairs.append(Pair(folder.name, subset, k, reference, image, _read_homography(h_path)))
    if not seq.pairs:
        raise DatasetError(f"sequence '{folder}' has no second image ({stem.format(2)})")
    return seq


#: Where the datasets come from, for the messages (``keypoints download --datasets`` has more).
_WHERE = (
    "HPatches: extract http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-sequences-release.tar.gz "
    "and pass the hpatches-sequences-release folder; Oxford affine: "
    "https://www.robots.ox.ac.uk/~vgg/research/affine/, one folder per sequence "
    "(`keypoints download --datasets` says where and how)"
)


def load_dataset(root: str | Path) -> list[Sequence]:
    """All sequences below ``root`` (or ``root`` itself when it is one sequence), sorted by name.

    Raises :class:`DatasetError` naming any missing image or homography file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder '{root}' does not exist; {_WHERE}")
    single = _sequence(root)
    if single is not None:
        return [single]
    sequences = [s for d in sorted(root.iterdir()) if d.is_dir() and (s := _sequence(d))]
    if not sequences:
        raise DatasetError(
            f"no sequences found in '{root}': expected folders with 1.ppm + H_1_2 ... (HPatches) "
            f"or img1.ppm + H1to2p ... (Oxford affine); {_WHERE}"
        )
    return sequences
