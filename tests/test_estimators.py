"""Robust estimators (keypoints.estimators.fit): PoseLib and OpenCV's USAC MAGSAC++ on synthetic
correspondences with a known homography or a known two-camera geometry and gross outliers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from keypoints.errors import ConfigError
from keypoints.estimators import ESTIMATORS, fit
from keypoints.evaluation.metrics import corner_error, warp_points

pytest.importorskip("poselib")

SIZE = (640, 480)  # (width, height) of both images
INLIERS = 200
OUTLIERS = round(INLIERS * 0.3 / 0.7)  # 30% of all correspondences
NOISE = 0.1  # pixels
MIN_OFFSET = 20.0  # pixels an outlier is at least away from being consistent with the truth
K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform((0, 0), (SIZE[0] - 1, SIZE[1] - 1), size=(n, 2))


def _gross_outliers(rng: np.random.Generator, residual) -> tuple[np.ndarray, np.ndarray]:
    """OUTLIERS random correspondences whose ``residual(p0, p1)`` (pixels, one per row) under
    the true model is at least MIN_OFFSET: none is consistent with the truth by chance."""
    points0, points1 = _uniform(rng, OUTLIERS), np.empty((OUTLIERS, 2))
    for i in range(OUTLIERS):
        candidate = _uniform(rng, 1)
        while residual(points0[i : i + 1], candidate)[0] < MIN_OFFSET:
            candidate = _uniform(rng, 1)
        points1[i] = candidate[0]
    return points0, points1


def _shuffled(rng, inliers0, inliers1, outliers0, outliers1):
    """All correspondences in random order, with the mask of the true inliers."""
    p0, p1 = np.concatenate([inliers0, outliers0]), np.concatenate([inliers1, outliers1])
    truth = np.arange(len(p0)) < len(inliers0)
    order = rng.permutation(len(p0))
    return p0[order], p1[order], truth[order]


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return z @ y @ x


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def _epipolar_distances(f: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Per correspondence, the larger of the distances (pixels) of p1 to the epipolar line
    ``F p0`` in image 1 and of p0 to ``F^T p1`` in image 0."""
    h0 = np.concatenate([p0, np.ones((len(p0), 1))], axis=1)
    h1 = np.concatenate([p1, np.ones((len(p1), 1))], axis=1)
    lines1, lines0 = h0 @ f.T, h1 @ f  # rows: F p0, F^T p1
    algebraic = np.abs(np.sum(h1 * lines1, axis=1))
    d1 = algebraic / np.linalg.norm(lines1[:, :2], axis=1)
    d0 = algebraic / np.linalg.norm(lines0[:, :2], axis=1)
    return np.maximum(d0, d1)


def _project(points: np.ndarray) -> np.ndarray:
    p = points @ K.T
    return p[:, :2] / p[:, 2:3]


def _inside(points: np.ndarray) -> np.ndarray:
    return np.all((points >= 0) & (points <= np.array(SIZE) - 1), axis=1)


@pytest.fixture(scope="module")
def homography_data():
    """A perspective homography of a 640x480 image (its corners moved by 20-55 px), 200 noisy
    inliers, 30% gross outliers: ``(points0, points1, true inlier mask, H)``."""
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [639, 0], [639, 479], [0, 479]], dtype=np.float64)
    moved = corners + np.array([[40, 25], [-30, 45], [-55, -20], [35, -40]])
    rows = []  # the DLT equations of the four corner correspondences
    for (x, y), (u, v) in zip(corners, moved):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    truth = np.linalg.svd(np.array(rows))[2][-1].reshape(3, 3)
    truth /= truth[2, 2]
    inliers0 = _uniform(rng, INLIERS)
    inliers1 = warp_points(inliers0, truth) + rng.normal(0, NOISE, (INLIERS, 2))
    outliers = _gross_outliers(
        rng, lambda p0, p1: np.linalg.norm(warp_points(p0, truth) - p1, axis=1)
    )
    return (*_shuffled(rng, inliers0, inliers1, *outliers), truth)


@pytest.fixture(scope="module")
def fundamental_data():
    """Two cameras (K: f = 525 px, 640x480) looking at random 3D points 4-12 units away, the
    second rotated by about 12 degrees and moved by about 1 unit; 200 noisy inliers visible in
    both images, 30% gross outliers: ``(points0, points1, true inlier mask, F, (R, t))``."""
    rng = np.random.default_rng(1)
    rotation, translation = _rotation(0.05, -0.2, 0.03), np.array([-1.0, 0.1, 0.15])
    depth = rng.uniform(4, 12, size=(20 * INLIERS, 1))
    rays = np.concatenate([(_uniform(rng, len(depth)) - K[:2, 2]) / K[0, 0],
                           np.ones((len(depth), 1))], axis=1)  # fmt: skip
    world = rays * depth  # in camera 0's frame
    seen0, seen1 = _project(world), _project(world @ rotation.T + translation)
    visible = np.flatnonzero(_inside(seen1))[:INLIERS]
    assert len(visible) == INLIERS
    inliers0 = seen0[visible] + rng.normal(0, NOISE, (INLIERS, 2))
    inliers1 = seen1[visible] + rng.normal(0, NOISE, (INLIERS, 2))
    k_inv = np.linalg.inv(K)
    truth = k_inv.T @ _skew(translation) @ rotation @ k_inv  # x1^T F x0 = 0
    outliers = _gross_outliers(rng, lambda p0, p1: _epipolar_distances(truth, p0, p1))
    return (*_shuffled(rng, inliers0, inliers1, *outliers), truth, (rotation, translation))


@pytest.mark.parametrize("threshold", [1.0, 3.0])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_homography_recovered_and_outliers_flagged(homography_data, estimator, threshold):
    p0, p1, truth_mask, truth = homography_data
    matrix, inliers = fit(p0, p1, "homography", estimator, threshold)
    assert matrix is not None
    assert matrix.shape == (3, 3) and matrix.dtype == np.float64
    assert matrix[2, 2] == pytest.approx(1.0)
    assert corner_error(matrix, truth, SIZE) < 1.0
    assert inliers.shape == (len(p0),) and inliers.dtype == bool
    assert not inliers[~truth_mask].any(), "a gross outlier was kept"
    assert inliers[truth_mask].mean() >= 0.95


@pytest.mark.parametrize("threshold", [1.0, 3.0])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fundamental_recovered_and_outliers_flagged(fundamental_data, estimator, threshold):
    p0, p1, truth_mask, truth, _ = fundamental_data
    matrix, inliers = fit(p0, p1, "fundamental", estimator, threshold)
    assert matrix is not None
    assert matrix.shape == (3, 3) and matrix.dtype == np.float64
    assert np.linalg.norm(matrix) == pytest.approx(1.0)
    assert abs(np.linalg.det(matrix)) < 1e-9  # rank 2
    residuals = _epipolar_distances(matrix, p0[truth_mask], p1[truth_mask])
    assert residuals.max() < 1.0
    assert np.median(residuals) < 0.3
    # close to the truth up to scale and sign, compared as essential matrices (K^T F K), whose
    # entries are of one magnitude (those of F in pixels span six orders)
    essential, true_essential = K.T @ matrix @ K, K.T @ truth @ K
    essential /= np.linalg.norm(essential)
    true_essential /= np.linalg.norm(true_essential)
    difference = min(np.linalg.norm(essential - true_essential),
                     np.linalg.norm(essential + true_essential))  # fmt: skip
    assert difference < 0.02
    assert inliers.shape == (len(p0),) and inliers.dtype == bool
    assert not inliers[~truth_mask].any(), "a gross outlier was kept"
    assert inliers[truth_mask].mean() >= 0.95


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimators_agree_on_the_inliers(homography_data, fundamental_data, estimator):
    """Both estimators find the same model: their inlier masks differ on few correspondences."""
    other = next(e for e in ESTIMATORS if e != estimator)
    for model, data in (("homography", homography_data), ("fundamental", fundamental_data)):
        p0, p1 = data[0], data[1]
        mask = fit(p0, p1, model, estimator, 2.0)[1]
        other_mask = fit(p0, p1, model, other, 2.0)[1]
        assert (mask != other_mask).mean() < 0.05


@pytest.mark.parametrize(
    ("name", "hint"), [("poslib", "did you mean 'poselib'"), ("opencv2", "did you mean 'opencv'")]
)
def test_unknown_estimator_suggests_the_closest(homography_data, name, hint):
    with pytest.raises(ConfigError, match=hint):
        fit(homography_data[0], homography_data[1], "homography", name, 3.0)


def test_unknown_estimator_lists_the_estimators(homography_data):
    with pytest.raises(ConfigError, match="available: poselib, opencv") as error:
        fit(homography_data[0], homography_data[1], "homography", "ransac", 3.0)
    assert "did you mean" not in str(error.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "homogrpahy"}, "did you mean 'homography'"),
        ({"threshold": 0.0}, "threshold=0.0 is out of range"),
        ({"threshold": -1.0}, "threshold=-1.0 is out of range"),
        ({"confidence": 1.0}, "confidence=1.0 is out of range"),
        ({"max_iters": 0}, "max_iters=0 is out of range"),
    ],
)
def test_invalid_options_raise_config_error(homography_data, options, message):
    arguments = {"model": "homography", "estimator": "opencv", "threshold": 3.0, **options}
    with pytest.raises(ConfigError, match=message):
        fit(homography_data[0], homography_data[1], **arguments)


def test_poselib_not_installed_says_how_to_install(homography_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "poselib", None)  # import poselib raises ImportError
    with pytest.raises(ConfigError, match="pip install poselib"):
        fit(homography_data[0], homography_data[1], "homography", "poselib", 3.0)
    matrix, _ = fit(homography_data[0], homography_data[1], "homography", "opencv", 3.0)
    assert matrix is not None  # OpenCV does not need it


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("model", "minimum"), [("homography", 4), ("fundamental", 8)])
def test_too_few_points_give_no_matrix(homography_data, estimator, model, minimum):
    p0, p1 = homography_data[0], homography_data[1]
    for count in (0, 1, minimum - 1):
        matrix, inliers = fit(p0[:count], p1[:count], model, estimator, 3.0)
        assert matrix is None
        assert inliers.shape == (count,) and inliers.dtype == bool and not inliers.any()


def test_points_must_be_matching_k_by_2_arrays(homography_data):
    p0, p1 = homography_data[0], homography_data[1]
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        fit(p0, p1[:-1], "homography", "opencv", 3.0)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        fit(p0[:, :1], p1[:, :1], "homography", "opencv", 3.0)
    bad = p0.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit(bad, p1, "homography", "poselib", 3.0)
