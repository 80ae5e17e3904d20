"""Matching, geometric verification and the match plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EXAMPLE

import keypoints
import keypoints.evaluation
from keypoints import ConfigError, Features, match, verify
from keypoints.evaluation import warp_points


def feats(desc, kpts=None, binary=False, size=(100, 100)):
    desc = torch.as_tensor(desc)
    n = len(desc)
    if kpts is None:
        kpts = torch.rand(n, 2) * 90
    return Features(
        torch.as_tensor(kpts, dtype=torch.float32), torch.ones(n), desc, size, binary=binary
    )


def test_mutual_nearest_neighbour_on_hand_made_descriptors():
    eye = torch.eye(4)
    d0 = eye[[0, 1, 2, 3]]
    d1 = torch.stack([eye[2], eye[0], eye[3] * 0.9 + eye[1] * 0.1, eye[1] * 0.2 + eye[2] * 0.8])
    m = match(feats(d0), feats(d1))
    # 0<->1 and 3<->2 are mutual; 2's nearest is 0 (exact), 0's nearest... 1's nearest is 3 but
    # 3's nearest in image 0 is 2: not mutual
    assert m.indices.tolist() == [[0, 1], [2, 0], [3, 2]]
    assert m.indices.dtype == torch.int64 and m.distances.shape == (3,)
    torch.testing.assert_close(m.distances[:2], torch.zeros(2))


def test_ratio_test_and_max_distance():
    d0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d1 = torch.tensor([[1.0, 0.05], [1.0, -0.05], [0.0, 1.0]])  # 0 is ambiguous in image 1
    assert len(match(feats(d0), feats(d1))) == 2
    m = match(feats(d0), feats(d1), ratio=0.8)
    assert m.indices.tolist() == [[1, 2]]
    m = match(feats(d0), feats(d1), max_distance=0.01)
    assert m.indices.tolist() == [[1, 2]]


def test_hamming_for_binary_descriptors():
    rng = np.random.default_rng(0)
    d0 = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    d1 = d0[::-1].copy()
    d1[0, 0] ^= 0b111  # three bits differ for this pair
    m = match(feats(torch.from_numpy(d0), binary=True), feats(torch.from_numpy(d1), binary=True))
    assert m.indices.tolist() == [[i, 19 - i] for i in range(20)]
    assert m.distances[19].item() == 3 and m.distances[:19].eq(0).all()
    with pytest.raises(ConfigError, match="binary"):
        match(feats(torch.from_numpy(d0), binary=True), feats(torch.rand(20, 32)))


def test_chunking_gives_the_same_result():
    torch.manual_seed(0)
    f0, f1 = feats(torch.randn(500, 32)), feats(torch.randn(700, 32))
    whole = match(f0, f1, ratio=0.95)
    small = match(f0, f1, ratio=0.95, block_elements=700 * 7)  # 7 rows at a time
    assert torch.equal(whole.indices, small.indices)
    torch.testing.assert_close(whole.distances, small.distances)
    cosine = match(f0, f1, metric="cosine")
    assert len(cosine) > 0


def test_empty_and_mismatched_inputs():
    assert len(match(feats(torch.zeros(0, 8)), feats(torch.rand(5, 8)))) == 0
    with pytest.raises(ConfigError, match="descriptor sizes differ"):
        match(feats(torch.rand(3, 8)), feats(torch.rand(3, 16)))
    with pytest.raises(ConfigError, match="did you mean 'mnn'"):
        match(feats(torch.rand(3, 8)), feats(torch.rand(3, 8)), method="nmn")


def test_verify_recovers_a_known_homography():
    rng = np.random.default_rng(1)
    H = np.array([[0.9, 0.1, 12.0], [-0.05, 1.1, -7.0], [1e-4, 2e-4, 1.0]])
    p0 = rng.uniform(0, 400, (200, 2))
    p1 = warp_points(p0, H)
    p1[:40] += rng.uniform(30, 60, (40, 2))  # 40 outliers
    f0 = feats(torch.eye(200), p0, size=(400, 400))
    f1 = feats(torch.eye(200), p1, size=(600, 600))
    m = match(f0, f1)
    assert len(m) == 200
    fit = verify(f0, f1, m, "homography", threshold=1.0)
    assert fit.success and fit.num_inliers == 160 and not fit.inliers[:40].any()
    np.testing.assert_allclose(fit.matrix / fit.matrix[2, 2], H, rtol=1e-3, atol=1e-5)
    fund = verify(f0, f1, m, "fundamental")
    assert fund.matrix.shape == (3, 3) and fund.inliers.shape == (200,)


def test_verify_with_too_few_matches():
    f = feats(torch.eye(3))
    fit = verify(f, f, match(f, f), "homography")
    assert not fit.success and fit.num_inliers == 0 and "needs 4 matches, got 3" in fit.message
    with pytest.raises(ConfigError, match="did you mean 'homography'"):
        verify(f, f, match(f, f), "homographie")


def test_plot_matches_colours_inliers():
    import matplotlib

    matplotlib.use("Agg")
    f0, f1 = (
        feats(torch.eye(3), [[1, 1], [5, 5], [9, 9]]),
        feats(torch.eye(3), [[2, 2], [6, 6], [8, 8]]),
    )
    m = match(f0, f1)
    fig = keypoints.plot_matches(
        str(EXAMPLE), np.zeros((20, 30), np.uint8), f0, f1, m, np.array([1, 0, 1], bool)
    )
    lines = fig.axes[0].collections[0]
    colors = [tuple(c[:3]) for c in lines.get_colors()]
    assert colors == [matplotlib.colors.to_rgb(c) for c in ("lime", "red", "lime")]
    segments = lines.get_segments()
    # the right image (20 px high) is drawn at the left one's height (x24), 10 px to its right;
    # pixel centres at integers: (6 + 0.5) * 24 - 0.5
    scaled = 6.5 * 24 - 0.5
    np.testing.assert_allclose(segments[1], [[5, 5], [640 + 10 + scaled, scaled]], atol=1e-4)


def test_end_to_end_recovers_the_example_warp():
    """examples/cats_warped.jpg is examples/cats.png warped by examples/cats_H.txt."""
    root = EXAMPLE.parent
    f0, f1 = keypoints.detect([str(EXAMPLE), str(root / "cats_warped.jpg")], "aliked-n16")
    m = keypoints.match(f0, f1)
    fit = keypoints.verify(f0, f1, m, "homography", 3.0)
    assert fit.num_inliers > 0.8 * len(m) > 400
    error = keypoints.evaluation.corner_error(
        fit.matrix, np.loadtxt(root / "cats_H.txt"), f0.image_size
    )
    assert error < 2.0
