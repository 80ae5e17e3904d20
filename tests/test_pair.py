"""keypoints.pair.match_images: the two-image pipeline of `keypoints match` and the web demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import keypoints
from keypoints.pair import STAGES, match_images
from keypoints.presets import compose

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "keypoints" / "demo" / "examples"
CATS, WARPED, TURNED = (
    EXAMPLES / "cats.jpg",
    EXAMPLES / "cats_warped.jpg",
    EXAMPLES / "cats_turned.jpg",
)


def corner_error(matrix: np.ndarray, truth: np.ndarray, width: int, height: int) -> float:
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1],
                        [0, height - 1, 1]], np.float64).T  # fmt: skip
    a, b = matrix @ corners, truth @ corners
    return float(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())


def test_match_pair_equals_its_parts():
    pipeline = keypoints.load_preset("sift-mnn")
    result = match_images(str(CATS), str(WARPED), pipeline, geometry="homography")
    f0, f1 = keypoints.detect([str(CATS), str(WARPED)], "sift", resize=pipeline.resize,
                              **pipeline.options)  # fmt: skip
    assert result.features0 == f0 and result.features1 == f1
    assert result.matches == pipeline.match(f0, f1)
    fitted = keypoints.verify(f0, f1, result.matches, "homography")
    np.testing.assert_array_equal(result.verification.inliers, fitted.inliers)
    assert result.rotation is None and result.rotation_inliers == ()  # SIFT: no search
    assert set(result.timings) == set(STAGES) and all(t >= 0 for t in result.timings.values())
    summary = result.summary()
    assert summary["matches"] == len(result.matches) and summary["inliers"] == fitted.num_inliers


def test_the_homography_found_is_the_true_one():
    truth = np.loadtxt(EXAMPLES / "cats_warped_H.txt")
    result = match_images(str(CATS), str(WARPED), keypoints.load_preset("aliked-lightglue"),
                        geometry="homography")  # fmt: skip
    assert result.method == "lightglue" and result.num_inliers > 500
    assert corner_error(result.verification.matrix, truth, 640, 480) < 2.0


def test_rotation_search_turns_image_2_back():
    truth = np.loadtxt(EXAMPLES / "cats_turned_H.txt")
    pipeline = compose(None, "aliked-n16", {"max_keypoints": 1024}, 640, "mnn")
    result = match_images(str(CATS), str(TURNED), pipeline, geometry="homography",
                        rotation="auto")  # fmt: skip
    assert result.rotation == 270 and len(result.rotation_inliers) == 4
    assert result.rotation_inliers[-1] == max(result.rotation_inliers)
    # keypoints of image 2 in its own (turned) frame: the homography maps image 1 onto it
    assert corner_error(result.verification.matrix, truth, 640, 480) < 3.0
    height, width = 640, 480  # cats_turned.jpg is portrait
    xy = result.features1.keypoints.numpy()
    assert (xy[:, 0] <= width - 1).all() and (xy[:, 1] <= height - 1).all()


def test_no_geometry_no_verification():
    result = match_images(str(CATS), str(WARPED), keypoints.load_preset("fast"), rotation="none")
    assert result.verification is None and result.num_inliers is None
    assert result.summary()["model"] is None and result.timings["verify"] == 0.0


def test_bad_geometry_is_refused_before_work():
    with pytest.raises(keypoints.ConfigError, match="unknown geometric model 'homografy'.*"
                       "did you mean 'homography'"):  # fmt: skip
        match_images(str(CATS), "missing.jpg", keypoints.load_preset("fast"), geometry="homografy")


def test_compose_merges_explicit_over_preset():
    chosen = compose("sift-mnn", None, {"max_keypoints": 100, "threshold": None}, 640)
    assert chosen.options == {"max_keypoints": 100} and chosen.resize == 640
    assert chosen.matcher == "mnn" and chosen.matcher_options == {"ratio": 0.8}
    assert compose(None, "xfeat", matcher_options={"ratio": 0.9}).matcher == "mnn"
    with pytest.raises(keypoints.ConfigError, match="conflicts with --preset sift-mnn"):
        compose("sift-mnn", "orb")
