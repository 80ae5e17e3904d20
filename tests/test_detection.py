"""keypoints.detect, Features, saving and plotting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import COCO, EXAMPLE, random_superpoint, require

import keypoints
from keypoints import ConfigError, Features, SuperPoint


class BrightSpotDetector(SuperPoint):
    """SuperPoint with the network replaced by identity: the heatmap is the image itself, so a
    bright spot is a keypoint at a position known analytically."""

    def encode(self, image):
        return image

    def heatmap(self, features):
        return features[:, 0]

    def dense_descriptors(self, features):
        return F.normalize(F.avg_pool2d(features, 8).repeat(1, 4, 1, 1) + 1, dim=1)


def spot_image(x0: int, y0: int, size=(48, 64)) -> np.ndarray:
    image = np.zeros(size, np.uint8)
    image[y0 : y0 + 2, x0 : x0 + 2] = 255  # a 2x2 spot centred at (x0 + 0.5, y0 + 0.5)
    return image


def test_keypoints_come_back_in_original_pixels():
    model = BrightSpotDetector(
        keypoints.SuperPointConfig(keypoint_threshold=0.5, border_removal_distance=0)
    )
    image = spot_image(20, 10)
    native = keypoints.detect(image, model, resize=None)[0]
    assert len(native) == 4  # the four tied spot pixels are all maxima
    torch.testing.assert_close(native.keypoints.mean(0), torch.tensor([20.5, 10.5]))
    half = keypoints.detect(image, model, resize=32)[0]  # 64x48 -> 32x24: the spot is one pixel
    assert len(half) == 1 and half.image_size == (64, 48)
    torch.testing.assert_close(half.keypoints, torch.tensor([[20.5, 10.5]]))
    assert half.keypoints.dtype == torch.float32


def test_detect_real_image_shapes(coco_images):
    model = random_superpoint()
    feats = keypoints.detect([str(COCO[0]), coco_images[1]], model, max_keypoints=300)
    assert [f.image_size for f in feats] == [(640, 480), (640, 432)]
    for f in feats:
        assert len(f) == 300 and f.keypoints.shape == (300, 2) and f.descriptors.shape == (300, 256)
        w, h = f.image_size
        assert (
            (f.keypoints >= 0).all()
            and (f.keypoints[:, 0] <= w - 1).all()
            and (f.keypoints[:, 1] <= h - 1).all()
        )
        assert torch.all(f.scores[:-1] >= f.scores[1:])  # top-k comes sorted
        assert f.model == "superpoint"


@pytest.mark.parametrize("size", [(479, 641), (7, 9), (1, 1), (8, 8), (33, 17)])
def test_odd_sizes(size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size, dtype=np.uint8)
    feats = keypoints.detect(image, random_superpoint(), resize=None, threshold=0.0)[0]
    assert feats.image_size == (size[1], size[0])
    if min(size) <= 2 * 4:  # smaller than the border on both sides: nothing to find
        assert len(feats) == 0
    else:
        assert len(feats) > 0
        assert (feats.keypoints[:, 0] < size[1] - 4).all() and (
            feats.keypoints[:, 1] < size[0] - 4
        ).all()
    assert feats.descriptors.shape == (len(feats), 256)


def test_resize_modes_and_batch_invariance():
    model = random_superpoint()
    image = np.asarray(keypoints.image.to_array(require(COCO[0])))
    alone = keypoints.detect(image, model, resize=320)[0]
    together = keypoints.detect(
        [np.zeros((100, 50, 3), np.uint8), image, image[:200]], model, resize=320
    )
    assert torch.equal(alone.keypoints, together[1].keypoints)
    assert torch.equal(alone.descriptors, together[1].descriptors)
    fixed = keypoints.detect(image, model, resize=(240, 320))[0]
    torch.testing.assert_close(fixed.keypoints, alone.keypoints)
    native = keypoints.detect(image, model, resize=None)[0]
    assert native.image_size == alone.image_size == (640, 480)
    assert len(native) != len(alone)


def test_option_errors():
    model = random_superpoint()
    with pytest.raises(ConfigError, match="did you mean 'threshold'"):
        keypoints.detect(np.zeros((16, 16), np.uint8), model, treshold=0.1)
    with pytest.raises(ConfigError, match=r"-1 \(all\) or >= 1"):
        keypoints.detect(np.zeros((16, 16), np.uint8), model, max_keypoints=0)
    with pytest.raises(ConfigError, match="nms_radius"):
        keypoints.detect(np.zeros((16, 16), np.uint8), model, nms_radius=-1)
    with pytest.raises(ConfigError, match="resize"):
        keypoints.detect(np.zeros((16, 16), np.uint8), model, resize=0)
    with pytest.raises(keypoints.ImageError, match="empty list"):
        keypoints.detect([], model)


def test_loaded_models_are_cached(random_checkpoint):
    keypoints.models.registry.clear_cache()
    a = keypoints.load_model(str(random_checkpoint))
    assert keypoints.load_model(str(random_checkpoint)) is a


def test_features_conversions_and_files(tmp_path):
    feats = keypoints.detect(str(EXAMPLE), random_superpoint(), max_keypoints=50)[0]
    arrays = feats.to_numpy()
    assert arrays["keypoints"].dtype == np.float32 and arrays["keypoints"].shape == (50, 2)
    assert arrays["image_size"].tolist() == [640, 480]
    cv = feats.to_cv2()
    assert len(cv) == 50 and cv[0].pt == pytest.approx(tuple(arrays["keypoints"][0]))
    assert cv[0].response == pytest.approx(float(arrays["scores"][0]))
    d = feats.to_dict()
    assert set(d) == {"keypoints", "keypoint_scores", "descriptors", "image_size"}
    assert d["image_size"].tolist() == [640.0, 480.0]
    for fmt in ("npz", "json"):
        path = keypoints.save_features(feats, tmp_path / f"f.{fmt}")
        back = keypoints.load_features(path)
        torch.testing.assert_close(back.keypoints, feats.keypoints)
        torch.testing.assert_close(back.descriptors, feats.descriptors)
        assert back.image_size == feats.image_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "f.npz"]  # no temp files left
    with pytest.raises(ConfigError, match="npz, json"):
        keypoints.save_features(feats, tmp_path / "f.txt")


def test_plot_keypoints_sizes_by_score():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    feats = Features(
        keypoints=torch.tensor([[10.0, 5.0], [30.0, 20.0]]),
        scores=torch.tensor([0.1, 0.4]),
        descriptors=torch.zeros(2, 4),
        image_size=(40, 30),
    )
    fig = keypoints.plot_keypoints(np.zeros((30, 40), np.uint8), feats)
    assert isinstance(fig, Figure)
    (scatter,) = fig.axes[0].collections
    np.testing.assert_allclose(scatter.get_offsets(), feats.keypoints.numpy())
    sizes = scatter.get_sizes()
    assert sizes[1] > sizes[0]
    np.testing.assert_allclose(scatter.get_facecolor()[0][:3], matplotlib.colors.to_rgb("cyan"))


@pytest.mark.parametrize("model", ["aliked-t16", "sift"])
def test_bgr_arrays_from_opencv(model):
    """``cv2.imread`` gives BGR: with channels="bgr" the result equals the file's; without it
    red and blue are swapped (other keypoints), as documented."""
    import cv2

    reference = keypoints.detect(str(EXAMPLE), model, max_keypoints=300)[0]
    bgr = cv2.imread(str(EXAMPLE))
    assert keypoints.detect(bgr, model, max_keypoints=300, channels="bgr")[0] == reference
    swapped = keypoints.detect(bgr, model, max_keypoints=300)[0]
    assert len(swapped) != len(reference) or not torch.equal(swapped.keypoints,
                                                             reference.keypoints)  # fmt: skip
    with pytest.raises(ConfigError, match="channels must be 'rgb' or 'bgr'"):
        keypoints.detect(bgr, model, channels="BGR")
