"""Features, Matches and Verification as objects: equality, selection, devices, OpenCV."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
from conftest import DATA, require

import keypoints


@pytest.fixture(scope="module")
def sift_pair():
    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    return keypoints.detect([str(graf / "img1.ppm"), str(graf / "img2.ppm")], "sift",
                            max_keypoints=300)  # fmt: skip


def test_equality(sift_pair):
    f, g = sift_pair
    assert f == copy.deepcopy(f) and f != g and f != "not features"
    changed = copy.deepcopy(f)
    changed.keypoints[0, 0] += 0.5
    assert changed != f
    other_dtype = copy.deepcopy(f)
    other_dtype.descriptors = other_dtype.descriptors.double()
    assert other_dtype != f
    no_scales = copy.deepcopy(f)
    no_scales.scales = None
    assert no_scales != f
    with pytest.raises(TypeError):
        hash(f)


@pytest.mark.parametrize(
    "index",
    [slice(0, 100), slice(None, None, 3), np.arange(10), [3, 1, 2], 5, -1, "mask", "numpy-mask"],
)
def test_selection_takes_the_same_rows_of_every_per_keypoint_field(sift_pair, index):
    f = sift_pair[0]
    if isinstance(index, str) and index == "mask":
        index = f.scores > f.scores.median()
    elif isinstance(index, str):
        index = (f.scores > f.scores.median()).numpy()
    rows = torch.arange(len(f))[torch.as_tensor(np.asarray(index))] if not isinstance(
        index, int | slice) else torch.arange(len(f))[index]  # fmt: skip
    rows = rows.reshape(-1)
    part = f[index]
    assert len(part) == len(rows) > 0
    for name in ("keypoints", "scores", "descriptors", "scales", "orientations"):
        assert torch.equal(getattr(part, name), getattr(f, name)[rows])
    assert (part.image_size, part.model, part.fingerprint, part.binary) == (
        f.image_size, f.model, f.fingerprint, f.binary)  # fmt: skip
    assert part.keypoints.ndim == 2  # an int keeps the dimension


def test_matches_selection_device_and_numpy(sift_pair):
    f, g = sift_pair
    matches = keypoints.match(f, g, method="mnn")
    fit = keypoints.verify(f, g, matches, "homography")
    inliers = matches[fit.inliers]
    assert len(inliers) == fit.num_inliers and torch.equal(
        inliers.indices, matches.indices[torch.as_tensor(fit.inliers)])  # fmt: skip
    assert matches.to("cpu") == matches and f.to("cpu") == f
    assert set(f.numpy()) == {"keypoints", "scores", "descriptors", "image_size", "scales",
                              "oris"}  # fmt: skip
    assert set(matches.numpy()) == {"indices", "distances"}
    text = repr(fit)
    assert text.startswith(f"Verification(homography, {fit.num_inliers}/{len(matches)} inliers")
    assert "array" not in text and len(text) < 120


def test_to_cv2_keeps_sift_size_and_angle(sift_pair):
    """The keypoints OpenCV's SIFT gives for the same 8-bit image and settings: each of ours
    comes back with OpenCV's own size and angle (a point may carry several angles)."""
    from keypoints.image import to_array
    from keypoints.models.registry import load_model

    f = sift_pair[0]
    net = load_model("sift", max_keypoints=300)
    path = DATA / "homography" / "oxford_affine" / "graf" / "img1.ppm"
    prepared = net.prepare(to_array(str(path)), None)
    gray = prepared.image[: prepared.size[0], : prepared.size[1]]
    sift = cv2.SIFT_create(nfeatures=300, contrastThreshold=net.config.threshold)
    theirs = sift.detect(gray, None)
    where = np.array([k.pt for k in theirs])
    angles = np.array([k.angle for k in theirs])
    sizes = np.array([k.size for k in theirs])
    ours = f.to_cv2()
    for point in ours:
        same = (np.abs(where - point.pt).max(axis=1) < 1e-3) & (np.abs(angles - point.angle) < 1e-3)
        assert same.any(), f"no OpenCV keypoint at {point.pt} with angle {point.angle}"
        assert point.size == pytest.approx(sizes[same][0], rel=1e-4)
    aliked = keypoints.Features(keypoints=f.keypoints, scores=f.scores,
                                descriptors=f.descriptors, image_size=f.image_size)  # fmt: skip
    assert {(k.size, k.angle) for k in aliked.to_cv2(size=8.0)} == {(8.0, -1.0)}
