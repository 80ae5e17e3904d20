"""Plots of keypoints and matches (matplotlib).

Every picture is laid out at the images' native resolution when saved at :data:`FIGURE_DPI`
(one image pixel, one picture pixel), within :data:`MAX_FIGURE_INCHES`; dots and lines are
sized from the number of keypoints or matches and the room they are drawn in, so that 10 or
10,000 of them stay readable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .features import Features
from .image import ImageInput, to_array, to_float

__all__ = [
    "plot_keypoints",
    "plot_compare",
    "plot_matches",
    "compare_grid",
    "keypoint_style",
    "line_style",
    "save_figure",
    "figure_format",
    "FIGURE_FORMATS",
    "FIGURE_DPI",
    "MAX_DISPLAY_SIDE",
    "MAX_FIGURE_INCHES",
    "INLIER_COLOR",
    "OUTLIER_COLOR",
    "MATCH_COLOR",
    "SCORE_CMAP",
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
#: Dots per inch of the figures made here and of :func:`save_figure`: an image up to
#: ``MAX_FIGURE_INCHES * FIGURE_DPI`` (1600) pixels wide is drawn at its native resolution.
FIGURE_DPI = 100
#: Small images are enlarged to at least this many inches on their longest side.
MIN_IMAGE_INCHES = 4.0
#: A figure is at least this wide, so that its title fits.
MIN_FIGURE_INCHES = 3.0
#: The band above an image for its one-line title, in inches.
TITLE_INCHES = 0.3
#: Match lines: inliers, outliers, and matches neither verified nor scored.
INLIER_COLOR, OUTLIER_COLOR, MATCH_COLOR = "lime", "red", "deepskyblue"
#: Colour map of match scores in [0, 1] (no green in it: green means inlier).
SCORE_CMAP = "plasma"

_GAP = 10.0  # pixels between the two images of a match figure
_PANEL_GAP = 0.1  # inches between the panels of a comparison
_COLORBAR_INCHES = 0.5  # the band below a match figure for its score colour bar


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


def save_figure(fig, path, dpi: int = FIGURE_DPI):
    """Save a matplotlib figure at ``path`` in the format of its suffix, atomically.

    At the default ``dpi`` a figure made here has the pixel size it was laid out for (at most
    ``MAX_FIGURE_INCHES * dpi`` on its longest side). Returns the path. See
    :func:`figure_format`.
    """
    from .io import atomic_write

    fmt = figure_format(path)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """``array`` (H, W, C) uint8 or float32 resized to ``(height, width, C)`` float32 in [0, 1].

    Area averaging when shrinking, bilinear when enlarging; resized before the float copy, so
    a huge uint8 image never exists as float32.
    """
    import cv2

    channels = array.shape[2]
    if (width, height) != (array.shape[1], array.shape[0]):
        shrinking = width * height < array.shape[0] * array.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        array = cv2.resize(array, (width, height), interpolation=interpolation)
    return to_float(array.reshape(height, width, channels))


def _for_display(array: np.ndarray, factor: float) -> np.ndarray:
    """``array`` (H, W, C) scaled by ``factor`` for ``imshow``: float32, (h, w) when gray."""
    height, width = array.shape[:2]
    shown = _resize(array, max(1, round(width * factor)), max(1, round(height * factor)))
    return shown[..., 0] if shown.shape[2] == 1 else shown


def _inches_per_pixel(width: float, height: float, extra_w: float = 0.0,
                      extra_h: float = 0.0) -> float:  # fmt: skip
    """Inches per pixel for a ``width`` x ``height`` picture beside ``extra_*`` inches of text.

    Native (``1 / FIGURE_DPI``) when it fits; small pictures enlarged to
    :data:`MIN_IMAGE_INCHES`, large ones reduced so that the figure stays within
    :data:`MAX_FIGURE_INCHES` on both sides.
    """
    width, height = max(width, 1e-6), max(height, 1e-6)
    scale = max(1.0 / FIGURE_DPI, MIN_IMAGE_INCHES / max(width, height))
    room_w, room_h = MAX_FIGURE_INCHES - extra_w, MAX_FIGURE_INCHES - extra_h
    return min(scale, room_w / width, room_h / height)


def _shown_points(ax, width: float, height: float) -> tuple[float, float]:
    """The size, in points, of a ``width`` x ``height`` image drawn with equal aspect in ``ax``."""
    box = ax.get_position()
    fig_w, fig_h = ax.figure.get_size_inches()
    room_w, room_h = box.width * fig_w * 72.0, box.height * fig_h * 72.0
    scale = min(room_w / max(width, 1e-6), room_h / max(height, 1e-6))
    return width * scale, height * scale


def keypoint_style(count: int, width_pt: float, height_pt: float) -> dict:
    """Dot style for ``count`` keypoints over an image drawn ``width_pt`` x ``height_pt`` points.

    The best keypoint's dot is 0.35 of the mean spacing between keypoints across (between 2.8
    and 8 points), so that dots cover about a tenth of the image whatever their number; many
    dots are more transparent, few get a thin dark edge to stand out on any background.

    Returns:
        ``{"max_size": marker area in pt^2 of the best keypoint, "alpha", "edge": edge width
        in points}``.
    """
    count = max(int(count), 1)
    spacing = math.sqrt(max(width_pt * height_pt, 1e-6) / count)
    diameter = min(max(0.35 * spacing, 2.8), 8.0)
    alpha = min(max(0.95 - 0.12 * math.log10(max(count, 100) / 100), 0.6), 0.95)
    return {"max_size": diameter**2, "alpha": alpha, "edge": 0.5 if count <= 300 else 0.0}


def line_style(count: int) -> dict:
    """Line width (points) and alpha for ``count`` match lines: thinner and fainter with more.

    Returns:
        ``{"linewidth": 1.5 (up to 64 lines) down to 0.3, "alpha": 0.9 (up to 30 lines) down
        to 0.25 (from about 800)}``. Outliers are drawn 1.5 times as wide and twice as opaque,
        so that a few stay visible among many inliers.
    """
    count = max(int(count), 1)
    linewidth = min(max(12.0 / math.sqrt(count), 0.3), 1.5)
    alpha = min(max(0.9 - 0.45 * math.log10(max(count, 30) / 30), 0.25), 0.9)
    return {"linewidth": linewidth, "alpha": alpha}


def _draw_keypoints(ax, shown: np.ndarray, width: int, height: int, features: Features,
                    color: str, max_size: float | None, title: str) -> None:  # fmt: skip
    """Draw ``shown`` (the display copy of a ``width`` x ``height`` image) and its keypoints."""
    # drawn in original-image pixels whatever the display size
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1,
              extent=(-0.5, width - 0.5, height - 0.5, -0.5))  # fmt: skip
    kpts = features.keypoints.detach().cpu().numpy().reshape(-1, 2)
    scores = features.scores.detach().cpu().numpy().astype(np.float64).reshape(-1)
    style = keypoint_style(len(kpts), *_shown_points(ax, width, height))
    if max_size is not None:
        style["max_size"] = max_size
    if len(scores):
        relative = np.clip(scores, 0.0, None) / max(float(scores.max()), 1e-12)
        sizes = style["max_size"] * (0.3 + 0.7 * relative)  # area grows with the score
        ax.scatter(kpts[:, 0], kpts[:, 1], s=sizes, c=color, alpha=style["alpha"],
                   linewidths=style["edge"], edgecolors="black")  # fmt: skip
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_title(title, fontsize=10, pad=4)
    ax.axis("off")


def plot_keypoints(
    image: ImageInput,
    features: Features,
    ax=None,
    color: str = "cyan",
    max_size: float | None = None,
    title: str | None = None,
):
    """Draw ``image`` with its keypoints as dots sized by score, as the transformers guide does.

    A new figure shows the image at its native resolution when saved at :data:`FIGURE_DPI`
    (a 640x480 image gives a 640-pixel-wide picture), enlarged to :data:`MIN_IMAGE_INCHES`
    when small and reduced to :data:`MAX_FIGURE_INCHES` when large; images over
    :data:`MAX_DISPLAY_SIDE` pixels are shrunk for display. Dot size and transparency follow
    the number of keypoints and the room the image gets (:func:`keypoint_style`), so 2,500
    keypoints stay dots and a few stay visible; within one plot a dot's area grows with its
    score.

    Args:
        image: the image the features were detected on (any input :func:`keypoints.detect`
            takes).
        features: :class:`Features` of that image: ``keypoints`` ``(N, 2)`` float32 (x, y) in
            original-image pixels, pixel centres at integers, and ``scores`` ``(N,)``.
        ax: a matplotlib Axes to draw into (its figure's layout is left alone); a new figure
            is made when None.
        color: dot colour.
        max_size: marker area (pt^2) of the best-scoring keypoint; None to follow the count
            and the image's size.
        title: the axes' title; None for ``"<N> keypoints"``.

    Returns:
        The matplotlib Figure; its axes are in original-image pixels, so ``features`` land on
        the image whatever the display size.
    """
    array = to_array(image)
    height, width = array.shape[:2]
    shown = _for_display(array, min(1.0, MAX_DISPLAY_SIDE / max(height, width)))
    if ax is None:
        fig, ax = _single_figure(width, height)
    title = title if title is not None else f"{len(features)} keypoints"
    _draw_keypoints(ax, shown, width, height, features, color, max_size, title)
    return ax.figure


def _single_figure(width: float, height: float, bottom: float = 0.0):
    """A figure holding a ``width`` x ``height`` picture, a title band above, ``bottom`` below.

    Returns:
        ``(figure, axes)``: the axes span the picture's area (inches from
        :func:`_inches_per_pixel`).
    """
    import matplotlib.pyplot as plt

    scale = _inches_per_pixel(width, height, extra_h=TITLE_INCHES + bottom)
    shown_w, shown_h = width * scale, height * scale
    fig_w, fig_h = max(shown_w, MIN_FIGURE_INCHES), shown_h + TITLE_INCHES + bottom
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=FIGURE_DPI)
    ax = fig.add_axes((0.0, bottom / fig_h, 1.0, shown_h / fig_h))
    return fig, ax


def compare_grid(count: int, width: float, height: float) -> tuple[int, int]:
    """``(rows, columns)`` for ``count`` panels of ``width`` x ``height`` images.

    The grid whose picture (with each panel's title band) is closest to square; no empty
    column or row.
    """
    best, best_cost = (1, 1), math.inf
    for cols in range(1, max(count, 1) + 1):
        rows = math.ceil(count / cols)
        if (cols - 1) * rows >= count:  # fewer columns hold them in as many rows
            continue
        aspect = cols * width / max(rows * height * (1 + TITLE_INCHES * FIGURE_DPI / 500), 1e-6)
        cost = abs(math.log(max(aspect, 1e-9)))
        if cost < best_cost - 1e-9:
            best, best_cost = (rows, cols), cost
    return best


def plot_compare(image: ImageInput, features: Mapping[str, Features], title: str | None = None,
                 color: str = "cyan"):  # fmt: skip
    """Draw one panel per detector on the same image, in a grid close to square.

    Panels are titled ``"<name>: <N> keypoints"`` and laid out as :func:`compare_grid` says
    (4 models on a landscape photo: 2x2; an unfilled last row is centred), each at the
    image's native resolution when the figure fits :data:`MAX_FIGURE_INCHES` (reduced
    otherwise). Dots as :func:`plot_keypoints`. One model gives one panel titled
    ``"<title>: <name>, <N> keypoints"``.

    Args:
        image: the image every ``features`` was detected on (any input :func:`keypoints.detect`
            takes).
        features: panel name (e.g. the model) -> its :class:`Features` (``keypoints``
            ``(N, 2)`` float32 (x, y) original-image pixels, centres at integers).
        title: the figure's title (e.g. the file name); None for none.
        color: dot colour.

    Returns:
        The matplotlib Figure; each panel's axes are in original-image pixels.
    """
    import matplotlib.pyplot as plt

    from .errors import ConfigError

    if not features:
        raise ConfigError("plot_compare needs at least one set of features")
    array = to_array(image)
    height, width = array.shape[:2]
    shown = _for_display(array, min(1.0, MAX_DISPLAY_SIDE / max(height, width)))
    if len(features) == 1:
        ((name, only),) = features.items()
        label = f"{name}: {len(only)} keypoints"
        label = label if title is None else f"{title}: {name}, {len(only)} keypoints"
        fig, ax = _single_figure(width, height)
        _draw_keypoints(ax, shown, width, height, only, color, None, label)
        return fig
    rows, cols = compare_grid(len(features), width, height)
    top = TITLE_INCHES if title is not None else 0.0
    extra_h = top + rows * TITLE_INCHES + (rows - 1) * _PANEL_GAP
    scale = _inches_per_pixel(cols * width, rows * height, (cols - 1) * _PANEL_GAP, extra_h)
    panel_w, panel_h = width * scale, height * scale
    grid_w = cols * panel_w + (cols - 1) * _PANEL_GAP
    fig_w = max(grid_w, MIN_FIGURE_INCHES)
    fig_h = top + rows * (TITLE_INCHES + panel_h) + (rows - 1) * _PANEL_GAP
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=FIGURE_DPI)
    if title is not None:
        fig.text(0.5, 1.0 - 0.5 * top / fig_h, title, ha="center", va="center", fontsize=11)
    items = list(features.items())
    for row in range(rows):
        in_row = items[row * cols : (row + 1) * cols]
        row_w = len(in_row) * panel_w + (len(in_row) - 1) * _PANEL_GAP
        left = (fig_w - row_w) / 2  # an unfilled last row is centred
        bottom = fig_h - top - (row + 1) * (TITLE_INCHES + panel_h) - row * _PANEL_GAP
        for i, (name, found) in enumerate(in_row):
            x = left + i * (panel_w + _PANEL_GAP)
            ax = fig.add_axes((x / fig_w, bottom / fig_h, panel_w / fig_w, panel_h / fig_h))
            label = f"{name}: {len(found)} keypoints"
            _draw_keypoints(ax, shown, width, height, found, color, None, label)
    return fig


def _to_canvas(points: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """``(N, 2)`` (x, y) image pixels (centres at integers) -> canvas coordinates."""
    return (points.astype(np.float64) + 0.5) * scale - 0.5 + np.array([offset, 0.0])


def plot_matches(
    image0: ImageInput,
    image1: ImageInput,
    features0: Features,
    features1: Features,
    matches,
    inliers=None,
    ax=None,
    max_lines: int | None = 500,
    title: str | None = None,
    seed: int = 0,
):
    """Draw two images side by side at a common height with a line per match.

    Colours: with ``inliers``, inliers are green (:data:`INLIER_COLOR`) and outliers red
    (:data:`OUTLIER_COLOR`). Without them nothing is green, since nothing was verified: the
    lines follow ``matches.scores`` through :data:`SCORE_CMAP` (dark purple at 0 to yellow
    at 1, with a colour bar under a new figure) when the matcher scored them (LightGlue), else
    they are all :data:`MATCH_COLOR`. Lines are thin and semi-transparent, more so the more
    there are (:func:`line_style`); over ``max_lines`` a random subset (reproducible with
    ``seed``) is drawn and the title says ``"showing <n> of <K> matches"``.

    The image with fewer rows is scaled to the other's height (its keypoints with it), 10
    pixels apart; the axes are in the taller image's pixels, so with equal heights ``image0``
    keeps its own coordinates and ``image1``'s are shifted right by ``width0 + 10``. A new
    figure is sized as :func:`plot_keypoints` does, images over :data:`MAX_DISPLAY_SIDE` are
    shrunk for display.

    Args:
        image0: the image ``features0`` come from (any input ``detect`` takes).
        image1: the image ``features1`` come from (any input ``detect`` takes).
        features0: the :class:`Features` of ``image0``: ``keypoints`` ``(N0, 2)`` float32
            (x, y) in original-image pixels, centres at integers.
        features1: the :class:`Features` of ``image1``, keypoints ``(N1, 2)`` likewise.
        matches: :class:`keypoints.Matches` between them: ``indices`` ``(K, 2)`` into
            ``features0`` and ``features1``, optional ``scores`` ``(K,)`` in [0, 1].
        inliers: optional ``(K,)`` bool per match (e.g. ``verify(...).inliers``).
        ax: a matplotlib Axes to draw into (its figure's layout is left alone, no colour
            bar); a new figure is made when None.
        max_lines: draw at most this many matches (a random subset), None for all.
        title: the axes' title; None for ``"<K> matches"``, with the inlier and outlier
            counts when ``inliers`` is given, or the subset drawn.
        seed: seed of the random subset.

    Returns:
        The matplotlib Figure; the lines are ``fig.axes[0].collections[0]`` (a
        LineCollection, one segment per drawn match, in match order).
    """
    from matplotlib.collections import LineCollection

    canvas, width, height, scales, offset = _side_by_side(to_array(image0), to_array(image1))
    idx = matches.indices.detach().cpu().numpy().reshape(-1, 2)
    total = len(idx)
    keep = np.arange(total)
    if max_lines is not None and total > max_lines:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(total, size=max(int(max_lines), 0), replace=False))
    style = line_style(len(keep))
    scores = getattr(matches, "scores", None)
    scored = inliers is None and scores is not None
    colors = _match_colors(keep, total, inliers, scores if scored else None)
    widths = np.full(len(keep), style["linewidth"])
    colors[:, 3] = style["alpha"]
    if inliers is not None:  # outliers stand out among many inliers
        bad = ~np.asarray(inliers, bool).reshape(-1)[keep]
        widths[bad] *= 1.5
        colors[bad, 3] = min(1.0, 2 * style["alpha"])
    if ax is None:
        fig, ax = _single_figure(width, height, bottom=_COLORBAR_INCHES if scored else 0.0)
        if scored:
            _score_colorbar(fig)
    else:
        fig = ax.figure
    ax.imshow(canvas, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    p0 = _to_canvas(features0.keypoints.detach().cpu().numpy()[idx[keep, 0]], scales[0], 0.0)
    p1 = _to_canvas(features1.keypoints.detach().cpu().numpy()[idx[keep, 1]], scales[1], offset)
    lines = LineCollection(list(np.stack([p0, p1], axis=1)), colors=colors, linewidths=widths)
    ax.add_collection(lines, autolim=False)
    ends = np.concatenate([colors, colors])  # the matched keypoints, more opaque than lines
    ends[:, 3] = np.minimum(ends[:, 3] + 0.4, 1.0)
    dot = max(2.5 * style["linewidth"], 1.8)
    ax.scatter(*np.concatenate([p0, p1]).reshape(-1, 2).T, s=dot**2, c=ends, linewidths=0)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    if title is None:
        title = (
            f"{total} matches" if len(keep) == total else f"showing {len(keep)} of {total} matches"
        )
        if inliers is not None:
            found = int(np.asarray(inliers, bool).sum())
            title += f": {found} inliers (green), {total - found} outliers (red)"
        elif scored:
            title += ", coloured by match score"
    ax.set_title(title, fontsize=10, pad=4)
    ax.axis("off")
    return fig


def _side_by_side(a0: np.ndarray, a1: np.ndarray):
    """The display canvas of two ``(H, W, C)`` images at a common height, ``_GAP`` apart.

    Returns:
        ``(canvas, width, height, scales, offset)``: ``canvas`` ``(h, w, 3)`` float32 in
        [0, 1], at most :data:`MAX_DISPLAY_SIDE` on its longest side; ``width`` x ``height``
        the canvas in the taller image's pixels; ``scales`` each image's scale into them;
        ``offset`` the x where the second image starts.
    """
    (h0, w0), (h1, w1) = a0.shape[:2], a1.shape[:2]
    height = max(h0, h1)
    scales = (height / h0, height / h1)
    offset = w0 * scales[0] + _GAP
    width = offset + w1 * scales[1]
    factor = min(1.0, MAX_DISPLAY_SIDE / max(height, width))  # shown shrunk when huge
    shown = (max(1, round(height * factor)), max(1, round(width * factor)))
    canvas = np.ones((*shown, 3), np.float32)
    for array, scale, start in ((a0, scales[0], 0.0), (a1, scales[1], offset)):
        size = (max(1, round(array.shape[1] * scale * factor)),
                max(1, round(array.shape[0] * scale * factor)))  # fmt: skip
        part = _resize(array, *size)
        column = min(round(start * factor), shown[1] - 1)
        part = part[: shown[0], : shown[1] - column]
        canvas[: part.shape[0], column : column + part.shape[1]] = part  # gray: broadcast
    return canvas, width, height, scales, offset


def _match_colors(keep: np.ndarray, total: int, inliers, scores) -> np.ndarray:
    """``(len(keep), 4)`` RGBA per drawn match: by inlier mask, else by score, else neutral."""
    import matplotlib
    from matplotlib.colors import to_rgba

    if inliers is not None:
        good = np.asarray(inliers, bool).reshape(-1)
        if len(good) != total:
            raise ValueError(f"inliers has {len(good)} values for {total} matches")
        colors = np.where(good[keep, None], to_rgba(INLIER_COLOR), to_rgba(OUTLIER_COLOR))
    elif scores is not None:
        values = np.clip(scores.detach().cpu().numpy().reshape(-1)[keep], 0.0, 1.0)
        colors = matplotlib.colormaps[SCORE_CMAP](values)
    else:
        colors = np.tile(to_rgba(MATCH_COLOR), (len(keep), 1))
    return np.array(colors, np.float64).reshape(-1, 4)


def _score_colorbar(fig) -> None:
    """A slim horizontal colour bar of :data:`SCORE_CMAP` over [0, 1] in the bottom band."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig_w, fig_h = fig.get_size_inches()
    bar_w = min(2.5, 0.4 * fig_w)
    cax = fig.add_axes(((fig_w - bar_w) / 2 / fig_w, 0.2 / fig_h, bar_w / fig_w, 0.08 / fig_h))
    mappable = ScalarMappable(Normalize(0.0, 1.0), SCORE_CMAP)
    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal", ticks=[0, 0.5, 1])
    bar.ax.tick_params(labelsize=7, length=2, pad=1)
    bar.outline.set_linewidth(0.5)
    cax.set_title("match score", fontsize=7, pad=2)
