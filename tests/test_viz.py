"""Pictures: every plot stays within its pixel budget at any image size and aspect, dots and
lines follow the number drawn, match colours follow the inlier mask (no green unless
verified), and a comparison is a grid close to square."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from PIL import Image  # noqa: E402

from keypoints import Features, Matches  # noqa: E402
from keypoints.cli import main  # noqa: E402
from keypoints.evaluation.homography import plot_mma, write_report  # noqa: E402
from keypoints.viz import (  # noqa: E402
    FIGURE_DPI,
    INLIER_COLOR,
    MAX_FIGURE_INCHES,
    MIN_IMAGE_INCHES,
    OUTLIER_COLOR,
    compare_grid,
    keypoint_style,
    line_style,
    plot_compare,
    plot_keypoints,
    plot_matches,
    save_figure,
)

BUDGET = int(MAX_FIGURE_INCHES * FIGURE_DPI)  # pixels on a picture's longest side
# (height, width) of the images drawn: ordinary, tall, wide, tiny, huge, a 1-pixel strip
SIZES = [(480, 640), (3000, 200), (200, 3000), (6, 8), (6000, 9000), (100000, 8)]


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) * 255).astype(np.uint8)


def _features(count: int, height: int, width: int, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    points = rng.random((count, 2)) * [width - 1, height - 1]
    return Features(
        keypoints=torch.tensor(points, dtype=torch.float32),
        scores=torch.tensor(rng.random(count) + 0.01, dtype=torch.float32),
        descriptors=torch.zeros(count, 4),
        image_size=(width, height),
    )


def _matches(count: int, size0: int, size1: int, scores: bool = False, seed: int = 0) -> Matches:
    rng = np.random.default_rng(seed)
    indices = np.stack([rng.integers(0, size0, count), rng.integers(0, size1, count)], axis=1)
    values = torch.tensor(rng.random(count), dtype=torch.float32)
    return Matches(
        indices=torch.tensor(indices, dtype=torch.int64),
        distances=1 - values,
        scores=values if scores else None,
    )


def _pixels(fig, tmp_path) -> tuple[int, int]:
    """The saved picture's (width, height), which the canvas announces."""
    path = save_figure(fig, tmp_path / "picture.png")
    with Image.open(path) as picture:
        size = picture.size
    assert size == fig.canvas.get_width_height()
    matplotlib.pyplot.close(fig)
    return size


def _within_budget(size: tuple[int, int]) -> None:
    assert max(size) <= BUDGET and min(size) >= 100, size


def _is_green(rgb) -> bool:
    r, g, b = rgb[:3]
    return g > 0.5 and g > r + 0.3 and g > b + 0.3


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_keypoint_pictures_stay_within_budget_with_the_image_aspect(tmp_path, height, width):
    features = _features(300, height, width)
    fig = plot_keypoints(_image(height, width), features)
    axes = fig.axes[0]
    box = axes.get_window_extent()  # the image's area, in picture pixels
    size = _pixels(fig, tmp_path)
    _within_budget(size)
    shown_w, shown_h = box.width, box.height
    if max(height, width) / min(height, width) < 20:  # the picture has the image's aspect
        assert shown_w / shown_h == pytest.approx(width / height, rel=0.02)
    if max(height, width) <= BUDGET:  # native resolution, or enlarged when small
        expected = max(1.0, MIN_IMAGE_INCHES * FIGURE_DPI / max(height, width))
        assert shown_w == pytest.approx(width * expected, abs=1)
    else:
        assert max(shown_w, shown_h) <= BUDGET


def test_an_ordinary_photo_is_drawn_at_its_native_resolution(tmp_path):
    fig = plot_keypoints(_image(480, 640), _features(50, 480, 640))
    box = fig.axes[0].get_window_extent()
    assert (box.width, box.height) == pytest.approx((640, 480))
    width, height = _pixels(fig, tmp_path)
    assert width == 640 and 480 < height <= 520  # the image and a one-line title


def test_dots_shrink_as_keypoints_grow_and_a_few_stay_visible():
    sizes, alphas = [], []
    for count in (10, 300, 2500, 10000):
        fig = plot_keypoints(_image(480, 640), _features(count, 480, 640))
        (dots,) = fig.axes[0].collections
        sizes.append(dots.get_sizes().max())
        alphas.append(dots.get_alpha())
        assert dots.get_sizes().min() >= 0.3 * 2.8**2  # never below about 1.5 points across
        matplotlib.pyplot.close(fig)
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 4 * sizes[2]
    assert alphas == sorted(alphas, reverse=True) and alphas[-1] >= 0.6
    # 2,500 dots cover well under half the image (once a solid blob)
    area = 2500 * np.pi / 4 * keypoint_style(2500, 460.8, 345.6)["max_size"]
    assert area < 0.3 * 460.8 * 345.6
    # the same count on a larger picture gets larger dots
    assert (
        keypoint_style(1000, 1152, 864)["max_size"] > keypoint_style(1000, 460.8, 345.6)["max_size"]
    )


def test_dot_area_follows_the_score():
    features = _features(40, 480, 640)
    fig = plot_keypoints(_image(480, 640), features)
    (dots,) = fig.axes[0].collections
    order = np.argsort(features.scores.numpy())
    assert np.all(np.diff(dots.get_sizes()[order]) >= 0)
    np.testing.assert_allclose(dots.get_offsets(), features.keypoints.numpy())
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(
    ("shape0", "shape1"),
    [
        ((480, 640), (480, 640)),
        ((480, 640), (240, 320)),  # different heights
        ((3000, 200), (200, 3000)),  # tall beside wide
        ((500, 1), (100000, 8)),  # once a 23 GB canvas
        ((6, 8), (6000, 9000)),  # tiny beside huge
    ],
)
def test_match_pictures_stay_within_budget(tmp_path, shape0, shape1):
    f0, f1 = _features(200, *shape0), _features(200, *shape1, seed=1)
    for inliers in (None, np.arange(150) % 3 > 0):
        matches = _matches(150, 200, 200, scores=inliers is None)
        fig = plot_matches(_image(*shape0), _image(*shape1, seed=1), f0, f1, matches, inliers)
        shown = fig.axes[0].images[0].get_array()
        assert max(shown.shape[:2]) <= 4096
        _within_budget(_pixels(fig, tmp_path))


def test_images_of_different_heights_are_drawn_at_a_common_height():
    f0, f1 = _features(5, 480, 640), _features(5, 240, 320, seed=1)
    matches = Matches(indices=torch.tensor([[0, 0], [1, 1]]), distances=torch.zeros(2))
    fig = plot_matches(_image(480, 640), _image(240, 320), f0, f1, matches)
    axes = fig.axes[0]
    canvas = axes.images[0].get_array()
    assert canvas.shape[:2] == (480, 640 + 10 + 640)  # the smaller one scaled by 2
    assert tuple(axes.images[0].get_extent()) == (-0.5, 1289.5, 479.5, -0.5)
    segments = axes.collections[0].get_segments()
    for segment, i in zip(segments, (0, 1)):
        np.testing.assert_allclose(segment[0], f0.keypoints[i].numpy(), rtol=1e-6)
        # pixel centres at integers: x -> (x + 0.5) * 2 - 0.5, then shifted right
        expected = (f1.keypoints[i].numpy() + 0.5) * 2 - 0.5 + [650, 0]
        np.testing.assert_allclose(segment[1], expected, rtol=1e-6)
    matplotlib.pyplot.close(fig)


def test_line_colours_follow_the_inlier_mask():
    f0, f1 = _features(100, 480, 640), _features(100, 480, 640, seed=1)
    matches = _matches(60, 100, 100, scores=True)
    inliers = np.random.default_rng(3).random(60) > 0.3
    fig = plot_matches(_image(480, 640), _image(480, 640), f0, f1, matches, inliers)
    lines = fig.axes[0].collections[0]
    colours = [tuple(c[:3]) for c in lines.get_colors()]
    expected = [to_rgb(INLIER_COLOR if good else OUTLIER_COLOR) for good in inliers]
    assert colours == expected and _is_green(to_rgb(INLIER_COLOR))
    assert fig.axes[0].get_title() == (
        f"60 matches: {inliers.sum()} inliers (green), {60 - inliers.sum()} outliers (red)"
    )
    widths = np.asarray(lines.get_linewidths())
    assert min(widths[~inliers]) > max(widths[inliers])  # outliers stand out
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("scored", [False, True])
def test_no_green_without_inliers(scored):
    f0, f1 = _features(100, 480, 640), _features(100, 480, 640, seed=1)
    matches = _matches(80, 100, 100, scores=scored)
    fig = plot_matches(_image(480, 640), _image(480, 640), f0, f1, matches)
    colours = fig.axes[0].collections[0].get_colors()
    assert len(colours) >= 1 and not any(_is_green(c) for c in colours)
    if scored:  # a colour map of the score, with a colour bar
        assert len({tuple(c) for c in colours}) > 10
        assert "coloured by match score" in fig.axes[0].get_title()
        assert len(fig.axes) == 2
    else:
        assert len({tuple(c) for c in colours}) == 1
        assert fig.axes[0].get_title() == "80 matches"
    matplotlib.pyplot.close(fig)


def test_many_matches_draw_a_stated_reproducible_random_subset():
    f0, f1 = _features(3000, 480, 640), _features(3000, 480, 640, seed=1)
    matches = _matches(2345, 3000, 3000)
    image = _image(480, 640)
    drawn = []
    for seed in (0, 0, 1):
        fig = plot_matches(image, image, f0, f1, matches, max_lines=800, seed=seed)
        assert fig.axes[0].get_title() == "showing 800 of 2345 matches"
        drawn.append(np.asarray(fig.axes[0].collections[0].get_segments()))
        matplotlib.pyplot.close(fig)
    assert drawn[0].shape == (800, 2, 2)
    np.testing.assert_array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[0], drawn[2])
    fig = plot_matches(image, image, f0, f1, matches, max_lines=None)
    assert len(fig.axes[0].collections[0].get_segments()) == 2345
    assert fig.axes[0].get_title() == "2345 matches"
    matplotlib.pyplot.close(fig)


def test_lines_thin_and_fade_as_matches_grow():
    styles = [line_style(n) for n in (10, 100, 800, 5000)]
    widths = [s["linewidth"] for s in styles]
    alphas = [s["alpha"] for s in styles]
    assert widths == sorted(widths, reverse=True) and widths[0] > 3 * widths[-1]
    assert alphas == sorted(alphas, reverse=True) and 0.2 <= alphas[-1] < 0.5 < alphas[0]
    f0, f1 = _features(1000, 480, 640), _features(1000, 480, 640, seed=1)
    drawn = []
    for count in (20, 800):
        fig = plot_matches(_image(480, 640), _image(480, 640), f0, f1, _matches(count, 1000, 1000))
        lines = fig.axes[0].collections[0]
        drawn.append((lines.get_linewidths()[0], lines.get_colors()[0][3]))
        matplotlib.pyplot.close(fig)
    assert drawn[0][0] > drawn[1][0] and drawn[0][1] > drawn[1][1]


@pytest.mark.parametrize(
    ("count", "height", "width", "grid"),
    [(1, 480, 640, (1, 1)), (2, 480, 640, (2, 1)), (4, 480, 640, (2, 2)), (7, 640, 480, None),
     (7, 480, 640, None), (3, 100, 2000, (3, 1)), (3, 2000, 100, (1, 3))],
)  # fmt: skip
def test_compare_grid_is_close_to_square(tmp_path, count, height, width, grid):
    rows, cols = compare_grid(count, width, height)
    assert rows * cols >= count and (rows - 1) * cols < count and (cols - 1) * rows < count
    if grid is not None:
        assert (rows, cols) == grid
    image = _image(height, width)
    found = {f"model-{i}": _features(100 + i, height, width, seed=i) for i in range(count)}
    fig = plot_compare(image, found, title="photo.png")
    titles = [ax.get_title() for ax in fig.axes]
    if count == 1:
        assert titles == ["photo.png: model-0, 100 keypoints"]
    else:
        assert titles == [f"model-{i}: {100 + i} keypoints" for i in range(count)]
    size = _pixels(fig, tmp_path)
    _within_budget(size)
    if max(height, width) / min(height, width) < 4:  # a grid, not a strip
        assert 0.5 <= size[0] / size[1] <= 2.0, size


def test_seven_models_on_a_portrait_photo_are_not_a_strip(tmp_path):
    """Once one 4480x520 row."""
    found = {f"m{i}": _features(200, 640, 480, seed=i) for i in range(7)}
    fig = plot_compare(_image(640, 480), found)
    width, height = _pixels(fig, tmp_path)
    assert width <= BUDGET and height <= BUDGET and 0.6 <= width / height <= 1.7


def test_compare_command_writes_a_grid(tmp_path):
    portrait = tmp_path / "portrait.png"
    Image.fromarray(_image(400, 300)).save(portrait)
    out = tmp_path / "out"
    assert main(["detect", str(portrait), "--compare", "sift,orb,sift,orb", "--max-keypoints",
                 "100", "-q", "-o", str(out)]) == 0  # fmt: skip
    with Image.open(out / "portrait_compare.png") as picture:
        width, height = picture.size
    assert width <= BUDGET and height <= BUDGET and 0.6 <= width / height <= 1.7
    assert width >= 2 * 300  # two columns at native resolution


def _summary(mma: float, subsets: dict) -> dict:
    """The shape of what evaluate_homography returns, 5 pairs per subset."""

    def aggregate(value: float, pairs: int) -> dict:
        return {
            "pairs": pairs,
            "mma": {str(t): min(1.0, value * t / 3) for t in range(1, 11)},
            "repeatability": value,
            "homography_accuracy": {str(t): value for t in (1, 3, 5, 10)},
            "homography_auc": {"5": value},
            "matches": 100.0,
        }

    every = aggregate(mma, 5 * len(subsets))
    subsets = {k: aggregate(v, 5) for k, v in subsets.items()}
    return {**every, "subsets": subsets, "keypoints": 1000.0, "ms_per_image": 50.0}


def test_mma_one_panel_for_one_subset(tmp_path):
    one = {"a": _summary(0.4, {"viewpoint": 0.4}), "b": _summary(0.3, {"viewpoint": 0.3})}
    fig = plot_mma(one)
    assert [ax.get_title() for ax in fig.axes] == ["viewpoint (5 pairs)"]
    assert len(fig.axes[0].lines) == 2
    two = {"a": _summary(0.4, {"viewpoint": 0.3, "illumination": 0.5})}
    fig = plot_mma(two)
    assert [ax.get_title() for ax in fig.axes] == [
        "all (10 pairs)",
        "illumination (5 pairs)",
        "viewpoint (5 pairs)",
    ]
    write_report(one, tmp_path)
    with Image.open(tmp_path / "mma.png") as picture:
        assert picture.size == (450, 400)
    write_report(two, tmp_path)
    with Image.open(tmp_path / "mma.png") as picture:
        assert picture.size == (1350, 400)
