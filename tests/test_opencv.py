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
