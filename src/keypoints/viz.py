"""Plots of keypoints (matplotlib)."""

from __future__ import annotations

import numpy as np

from .features import Features
from .image import ImageInput, to_array, to_float

__all__ = ["plot_keypoints", "plot_matches"]


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
    if array.shape[2] == 1:
        array = array[..., 0]
    if ax is None:
        height, width = array.shape[:2]
        scale = 8.0 / max(height, width)
        fig, ax = plt.subplots(figsize=(max(width * scale, 1.0), max(height * scale, 1.0)))
    else:
        fig = ax.figure
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1)
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
    a0, a1 = (np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in (a0, a1))
    height = max(a0.shape[0], a1.shape[0])
    gap = 10
    canvas = np.ones((height, a0.shape[1] + gap + a1.shape[1], 3), np.float32)
    canvas[: a0.shape[0], : a0.shape[1]] = a0
    offset = a0.shape[1] + gap
    canvas[: a1.shape[0], offset:] = a1
    if ax is None:
        scale = 12.0 / canvas.shape[1]
        fig, ax = plt.subplots(figsize=(12.0, max(canvas.shape[0] * scale, 1.0) + 0.4))
    else:
        fig = ax.figure
    ax.imshow(canvas)
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
