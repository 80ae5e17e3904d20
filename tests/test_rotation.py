"""rotation="auto": quarter turns of the second image, the best kept, results in its own frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import DATA, EXAMPLE, require

import keypoints
from keypoints.image import to_array
from keypoints.rotation import (
    check_rotation,
    features_to_original,
    quarter_turn_matrix,
    search_rotation,
    searches,
)

LONDON = DATA / "images" / "superglue" / "phototourism" / "london_bridge_19481797_2295892421.jpg"


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5])
def test_quarter_turn_matrix_is_numpy_rot90(turns):
    """Pixel (x, y) of an image lands where np.rot90 puts its value (pixel centres at
    integers), for a non-square image."""
    image = np.arange(7 * 5).reshape(5, 7)  # height 5, width 7
    turned = np.rot90(image, turns)
    matrix = quarter_turn_matrix(turns, (7, 5))
    for y in range(5):
        for x in range(7):
            u, v, w = matrix @ [x, y, 1.0]
            assert turned[int(round(v / w)), int(round(u / w))] == image[y, x]


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_features_back_to_the_original_frame(turns):
    """Features whose keypoints and orientations were turned with the image map back to the
    originals exactly (an orientation pointing right turns with the image); image_size is the
    original's; descriptors are untouched."""
    width, height = 64, 48
    points = torch.tensor([[0.0, 0.0], [63.0, 0.0], [10.25, 40.5], [63.0, 47.0]])
    angles = torch.tensor([0.0, 0.5, -2.0, 3.0])
    matrix = quarter_turn_matrix(turns, (width, height))
    turned_points = points.double().numpy() @ matrix[:2, :2].T + matrix[:2, 2]
    directions = np.stack([np.cos(angles.numpy()), np.sin(angles.numpy())], 1) @ matrix[:2, :2].T
    size = (height, width) if turns % 2 else (width, height)
    turned_angles = torch.from_numpy(np.arctan2(directions[:, 1], directions[:, 0])).float()
    turned = keypoints.Features(torch.from_numpy(turned_points).float(), torch.ones(4),
                                torch.eye(4), size, model="sift", scales=torch.ones(4),
                                orientations=turned_angles)  # fmt: skip
    back = features_to_original(turned, turns, (width, height))
    assert back.image_size == (width, height)
    torch.testing.assert_close(back.keypoints, points, atol=1e-5, rtol=0)
    difference = back.orientations - angles
    torch.testing.assert_close(torch.atan2(difference.sin(), difference.cos()), torch.zeros(4),
                               atol=1e-5, rtol=0)  # fmt: skip
    assert back.descriptors is turned.descriptors
    assert features_to_original(turned, 0, size) is turned


def rotated_pair(image: np.ndarray, degrees: float):
    """``image`` rotated by ``degrees`` (counterclockwise, on a canvas holding all of it), and
    the homography from the image to the rotated one."""
    height, width = image.shape[:2]
    rotation = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1],
                        [width - 1, height - 1, 1]], float) @ rotation.T  # fmt: skip
    low, high = corners.min(0), corners.max(0)
    rotation[:, 2] -= low
    size = np.ceil(high - low).astype(int) + 1
    turned = cv2.warpAffine(image, rotation, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR)
    return turned, np.vstack([rotation, [0, 0, 1]])


def correct(f0, f1, matches, homography, pixels=3.0) -> int:
    """The number of matches that agree with the true homography to within ``pixels``."""
    if len(matches) == 0:
        return 0
    idx = matches.indices.numpy()
    p0 = np.c_[f0.keypoints.numpy()[idx[:, 0]], np.ones(len(idx))] @ homography.T
    p1 = f1.keypoints.numpy()[idx[:, 1]]
    return int((np.linalg.norm(p0[:, :2] / p0[:, 2:] - p1, axis=1) < pixels).sum())


@pytest.mark.parametrize("degrees", [90, 30])
def test_auto_rotation_matches_rotated_pairs(degrees):
    """A shared photo rotated by 90 and by 30 degrees, ALIKED-n16 + LightGlue: with
    rotation="auto" most matches are right under the true homography and the fitted one is
    close to it; without it, the 90-degree pair fails and the 30-degree one is no better."""
    image = to_array(str(require(LONDON)))
    turned, truth = rotated_pair(image, degrees)
    net = keypoints.load_model("aliked-n16", max_keypoints=1024)

    def detect(array):
        return keypoints.detect(array, net)[0]

    def fit(a, b, m):
        return keypoints.verify(a, b, m, "homography")

    f0 = detect(image)
    found = search_rotation(f0, turned, detect, keypoints.match, fit)
    assert found.turns == (0 if degrees < 45 else 3)  # 90 degrees back is 3 more turns
    assert found.inliers[found.turns] == max(found.inliers)
    assert found.features1.image_size == (turned.shape[1], turned.shape[0])
    good = correct(f0, found.features1, found.matches, truth)
    assert good > 100 and good > 0.8 * len(found.matches)
    corners = np.array([[0, 0, 1], [image.shape[1] - 1, image.shape[0] - 1, 1]], float)
    fitted, expected = corners @ found.verification.matrix.T, corners @ truth.T
    error = np.abs(fitted[:, :2] / fitted[:, 2:] - expected[:, :2] / expected[:, 2:]).max()
    assert error < 5
    upright = detect(turned)
    plain = keypoints.match(f0, upright)
    if degrees == 90:
        assert correct(f0, upright, plain, truth) < 0.2 * good
    else:
        assert correct(f0, upright, plain, truth) <= good


def test_rotation_errors_and_cli(tmp_path, capsys):
    from keypoints.cli import main

    with pytest.raises(keypoints.ConfigError, match="unknown rotation 'auot'.*'auto'"):
        check_rotation("auot")
    image = to_array(str(EXAMPLE))
    turned = np.ascontiguousarray(np.rot90(image, 1))
    cv2.imwrite(str(tmp_path / "turned.png"), cv2.cvtColor(turned, cv2.COLOR_RGB2BGR))
    args = ["match", str(EXAMPLE), str(tmp_path / "turned.png"), "-o", str(tmp_path / "m.png")]
    upright = ["--model", "aliked-n16", "--verify", "homography"]
    assert main([*args, *upright, "--rotation", "auto"]) == 0
    out = capsys.readouterr().out
    assert "image1 turned by 270 degrees" in out and "(LightGlue)" in out
    assert main([*args, "--rotation", "sideways"]) == 2
    # SIFT assigns orientations: no search, and it matches the turned image anyway
    assert main([*args, "--model", "sift", "--verify", "homography"]) == 0
    out = capsys.readouterr().out
    assert "rotation:" not in out
    inliers = int(out.split("inliers (homography, poselib 2.0 px): ")[1].split()[0])
    assert inliers > 200


def test_search_is_skipped_for_rotation_invariant_detectors():
    assert searches("auto", "aliked-n16") and searches("auto", "disk")
    assert searches("auto", None)  # unknown detector: search
    assert searches("auto", "aliked-n16rot")  # trained with moderate rotations only
    assert not searches("auto", "sift") and not searches("auto", "orb")
    assert not searches("none", "aliked-n16")


def test_preset_match_images_with_rotation(tmp_path):
    """Preset.match_images(rotation="auto") matches a turned image, in its own frame."""
    image = to_array(str(EXAMPLE))
    turned = np.ascontiguousarray(np.rot90(image, 2))
    preset = keypoints.presets.custom("aliked-n16", {"max_keypoints": 512})
    f0, f1, matches = preset.match_images(image, turned, rotation="auto", geometry="homography")
    truth = quarter_turn_matrix(2, (image.shape[1], image.shape[0]))
    assert f1.image_size == (image.shape[1], image.shape[0])
    assert correct(f0, f1, matches, truth) > 0.8 * len(matches) > 100
    _, g1, plain = preset.match_images(image, turned)
    assert correct(f0, g1, plain, truth) < 0.2 * len(matches)
