"""Plots of keypoints (matplotlib)."""

from __future__ import annotations

import numpy as np

from .features import Features
from .image import ImageInput, to_array, to_float

__all__ = [
    "plot_keypoints",
    "plot_matches",
    "save_figure",
    "figure_format",
    "FIGURE_FORMATS",
    "MAX_DISPLAY_SIDE",
    "MAX_FIGURE_INCHES",
]

#: Picture formats by file suffix (matplotlib's writers; JPEG through Pillow).
FIGURE_FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "pdf": "pdf", "svg": "svg"}

#: Pictures are drawn with at most this many pixels on their longest side (the images are
#: shrunk for display, keypoints scaled with them): the memory of a plot stays bounded (about
#: 200 MB) whatever the images' sizes and aspect ratios.
MAX_DISPLAY_SIDE = 4096
#: A figure's longest side, in inches (a 1x500 beside an 8x100000 image once asked matplotlib
#: for a 2300-inch figure: 23 GB).
MAX_FIGURE_INCHES = 16.0


def figure_format(path) -> str:
    """The picture format of ``path``'s suffix (``"png"``, ``"jpg"``, ``"pdf"``, ``"svg"``).

    Other suffixes raise :class:`~keypoints.errors.ConfigError`: a ``.jpg`` name never gets
    PNG bytes.
    """
    from pathlib import Path

    from .errors import ConfigError, closest

    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise ConfigError(
            f"cannot write a picture as '{Path(path).name}'{closest(suffix, FIGURE_FORMATS)}: "
            f"use one of {', '.join('.' + s for s in FIGURE_FORMATS)}"
        )
    return FIGURE_FORMATS[suffix]


def save_figure(fig, path, dpi: int = 100):
    """Save a matplotlib figure at ``path`` in the format of its suffix, atomically.

    Returns the path. See :func:`figure_format`.
    """
    from .io import atomic_write

    fmt = figure_format(path)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def _shrink(array: np.ndarray, factor: float) -> np.ndarray:
    """``array`` (H, W, C) float32 scaled by ``factor`` <= 1 (area averaging)."""
    if factor >= 1.0:
        return array
    import cv2

    height, width = array.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    shrunk = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    return shrunk.reshape(size[1], size[0], array.shape[2])


def _figure_size(width: float, height: float, longest: float) -> tuple[float, float]:
    """Inches for a picture of ``width`` x ``height``.

    ``longest`` on its longer side (capped at :data:`MAX_FIGURE_INCHES`), at least one inch on
    each.
    """
    scale = min(longest, MAX_FIGURE_INCHES) / max(width, height, 1)
    return max(width * scale, 1.0), max(height * scale, 1.0)


def plot_keypoints(
    image: ImageInput,
    features: Features,
    ax=None,
    color: str = "cyan",
    max_size: float = 40.0,
    title: str | None = None,
):
    """Draw ``image`` with its keypoints as dots sized by score, as the transformers guide does.

    Args:
        image: the image the features were detected on (any input :func:`keypoints.detect`
            takes), shown at its original size; keypoints are (x, y) pixels, centres at integers.
        features: :class:`Features` of that image.
        ax: a matplotlib Axes to draw into; a new figure is made when None.
        color: dot colour.
        max_size: marker area (pt^2) of the best-scoring keypoint.
        title: the axes' title; None for ``"<N> keypoints"``.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    array = to_float(to_array(image))
    height, width = array.shape[:2]
    factor = min(1.0, MAX_DISPLAY_SIDE / max(height, width))
    array = _shrink(array, factor)
    if array.shape[2] == 1:
        array = array[..., 0]
    if ax is None:
        fig, ax = plt.subplots(figsize=_figure_size(width, height, 8.0))
    else:
        fig = ax.figure
    # drawn in original-image pixels whatever the display size
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1,
              extent=(-0.5, width - 0.5, height - 0.5, -0.5))  # fmt: skip
    kpts = features.keypoints.detach().cpu().numpy()
    scores = features.scores.detach().cpu().numpy().astype(np.float64)
    if len(scores):
        sizes = 2.0 + max_size * scores / max(float(scores.max()), 1e-12)
        ax.scatter(kpts[:, 0], kpts[:, 1], s=sizes, c=color, alpha=0.8, linewidths=0)
    ax.set_title(title if title is not None else f"{len(features)} keypoints")
    ax.axis("off")
    fig.tight_layout()
    return fig


def plot_matches(
    image0: ImageInput,
    image1: ImageInput,
    features0: Features,
    features1: Features,
    matches,
    inliers=None,
    ax=None,
    max_lines: int | None = 2000,
    title: str | None = None,
):
    """Draw two images side by side (tops aligned) with a line per match.

    Args:
        image0: the image ``features0`` come from (any input ``detect`` takes).
        image1: the image ``features1`` come from (any input ``detect`` takes).
        features0: the :class:`Features` of ``image0``.
        features1: the :class:`Features` of ``image1``.
        matches: :class:`keypoints.Matches` between them.
        inliers: optional ``(K,)`` bool per match (e.g. ``verify(...).inliers``): inliers are
            drawn green, outliers red; without it every match is drawn in one colour.
        ax: a matplotlib Axes to draw into; a new figure is made when None.
        max_lines: draw at most this many matches (evenly subsampled), None for all.
        title: the axes' title; None for ``"<K> matches"`` (and ``", <n> inliers"`` with
            ``inliers``).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    a0, a1 = (to_float(to_array(im)) for im in (image0, image1))
    # the canvas in original pixels: both images side by side, tops aligned, 10 px apart
    gap = 10
    offset = a0.shape[1] + gap
    height, width = max(a0.shape[0], a1.shape[0]), offset + a1.shape[1]
    factor = min(1.0, MAX_DISPLAY_SIDE / max(height, width))  # shown shrunk when huge
    a0, a1 = (_shrink(a, factor) for a in (a0, a1))
    a0, a1 = (np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in (a0, a1))
    shown = (max(1, round(height * factor)), max(1, round(width * factor)))
    canvas = np.ones((*shown, 3), np.float32)
    canvas[: a0.shape[0], : a0.shape[1]] = a0[: shown[0], : shown[1]]
    start = min(round(offset * factor), shown[1] - 1)
    canvas[: a1.shape[0], start : start + a1.shape[1]] = a1[: shown[0], : shown[1] - start]
    if ax is None:
        inches = _figure_size(width, height, 12.0)
        fig, ax = plt.subplots(figsize=(inches[0], inches[1] + 0.4))
    else:
        fig = ax.figure
    ax.imshow(canvas, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    idx = matches.indices.cpu().numpy()
    good = np.ones(len(idx), bool) if inliers is None else np.asarray(inliers, bool)
    keep = np.arange(len(idx))
    if max_lines is not None and len(keep) > max_lines:
        keep = keep[np.linspace(0, len(keep) - 1, max_lines).round().astype(int)]
    p0 = features0.keypoints.cpu().numpy()[idx[keep, 0]]
    p1 = features1.keypoints.cpu().numpy()[idx[keep, 1]] + np.array([offset, 0.0])
    segments = np.stack([p0, p1], axis=1)
    if inliers is None:
        colors = ["lime"] * len(keep)
    else:
        colors = ["lime" if g else "red" for g in good[keep]]
    ax.add_collection(LineCollection(list(segments), colors=colors, linewidths=0.6, alpha=0.7))
    ax.scatter(*np.concatenate([p0, p1]).T, s=2, c="cyan", linewidths=0)
    if title is None:
        title = f"{len(idx)} matches" + ("" if inliers is None else f", {int(good.sum())} inliers")
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig
