"""Plots of keypoints (matplotlib)."""

from __future__ import annotations

import numpy as np

from .features import Features
from .image import ImageInput, to_array, to_float

__all__ = ["plot_keypoints"]


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
        color: dot colour; max_size: marker area (pt^2) of the best-scoring keypoint.

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
