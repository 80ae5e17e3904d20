"""OpenCV SIFT and ORB adapters."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import EXAMPLE

import keypoints
from keypoints.models.opencv import SIFT


def test_sift_features():
    feats = keypoints.detect(str(EXAMPLE), "sift", max_keypoints=500)[0]
    assert len(feats) == 500 and feats.model == "sift" and not feats.binary
    assert feats.descriptors.dtype == torch.float32 and feats.descriptors.shape == (500, 128)
    torch.testing.assert_close(feats.descriptors.norm(dim=1), torch.ones(500))
    assert torch.all(feats.scores[:-1] >= feats.scores[1:])
    # the same keypoints as OpenCV itself on the same 8-bit grayscale image
    gray = np.asarray(
        keypoints.image.rgb_to_grayscale(
            keypoints.image.to_float(keypoints.image.to_array(EXAMPLE))
        )
    )
    gray8 = np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8)
    points = cv2.SIFT_create(nfeatures=500).detect(gray8, None)
    ours = {tuple(np.round(p, 3)) for p in feats.keypoints.numpy().tolist()}
    theirs = {tuple(np.round(p.pt, 3)) for p in points}
    assert len(ours & theirs) >= 0.95 * len(ours)


def test_rootsift():
    plain = SIFT().detect_image(np.asarray(keypoints.image.to_array(EXAMPLE))[..., 0])
    root = SIFT(rootsift=True).detect_image(np.asarray(keypoints.image.to_array(EXAMPLE))[..., 0])
    np.testing.assert_array_equal(plain[0], root[0])
    l1 = plain[2] / plain[2].sum(1, keepdims=True)  # plain is L2-normalised: L1-normalise again
    expected = np.sqrt(l1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(root[2], expected, atol=1e-5)
    assert (root[2] >= 0).all()


def test_orb_is_binary():
    feats = keypoints.detect(str(EXAMPLE), "orb", max_keypoints=300)[0]
    assert feats.binary and feats.model == "orb"
    assert feats.descriptors.dtype == torch.uint8 and feats.descriptors.shape == (len(feats), 32)
    assert 0 < len(feats) <= 300
    assert feats.to_numpy()["descriptors"].dtype == np.uint8


@pytest.mark.parametrize("name", ["sift", "orb"])
def test_blank_and_tiny_images_give_no_keypoints(name):
    for image in (np.zeros((64, 64), np.uint8), np.zeros((1, 1), np.uint8)):
        feats = keypoints.detect(image, name)[0]
        assert len(feats) == 0 and feats.keypoints.shape == (0, 2)
        assert feats.descriptors.shape[0] == 0


def test_option_errors():
    with pytest.raises(keypoints.ConfigError, match="did you mean 'rootsift'"):
        keypoints.detect(str(EXAMPLE), "sift", rootsfit=True)
    with pytest.raises(keypoints.ConfigError, match="nms_radius"):
        keypoints.detect(str(EXAMPLE), "orb", nms_radius=3)


def test_sift_scales_and_orientations_round_trip(tmp_path):
    """SIFT features carry OpenCV's sizes (in original-image pixels) and angles (radians),
    through save/load and hloc's layout; rootsift features are named so."""
    import cv2
    import h5py

    from keypoints.io.hloc import read_features, write_features

    gray = np.asarray(keypoints.image.to_array(EXAMPLE))[..., 0]
    gray8 = np.uint8(np.clip(np.rint(gray * 255), 0, 255))
    points = cv2.SIFT_create(nfeatures=200).detect(gray8, None)
    by_position = {(round(p.pt[0], 3), round(p.pt[1], 3)): p for p in points}
    feats = keypoints.detect(str(EXAMPLE), "sift", max_keypoints=200)[0]
    for (x, y), size, angle in zip(feats.keypoints.tolist(), feats.scales.tolist(),
                                   feats.orientations.tolist()):  # fmt: skip
        p = by_position.get((round(x, 3), round(y, 3)))
        if p is not None:
            assert abs(size - p.size) < 1e-3 and abs(angle - np.deg2rad(p.angle)) < 1e-4
    # detected at half size: sizes scaled back to original pixels, like the keypoints
    half = keypoints.detect(str(EXAMPLE), "sift", max_keypoints=200, resize=320)[0]
    small = SIFT().prepare(keypoints.image.to_array(EXAMPLE), 320)
    raw = SIFT(max_keypoints=200).detect_image(small.image)
    torch.testing.assert_close(half.scales, torch.from_numpy(raw[3]) * 2, rtol=1e-5, atol=1e-4)
    keypoints.save_features(feats, tmp_path / "f.npz")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        write_features(f, "cats.png", feats)
    loaded = keypoints.load_features(tmp_path / "f.npz")
    for back in (loaded, read_features(tmp_path / "f.h5", "cats.png")):
        assert torch.equal(back.scales, feats.scales)
        assert torch.equal(back.orientations, feats.orientations)
    assert keypoints.detect(str(EXAMPLE), "sift", rootsift=True)[0].model == "rootsift"
    assert keypoints.detect(str(EXAMPLE), "rootsift")[0].model == "rootsift"
    assert keypoints.detect(str(EXAMPLE), "aliked-n16")[0].scales is None
