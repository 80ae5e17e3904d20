"""XFeat: the same keypoints and descriptors as kornia's port on the released weights, shapes,
options, the strict-maxima NMS, and the public API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DATA, EXAMPLE, assert_batch_equals_singles, require
from PIL import Image

import keypoints
from keypoints.models.weights import load_state_dict
from keypoints.models.xfeat import XFeat, XFeatConfig, bundled_weights, strict_maxima

RELEASED = DATA / "weights" / "xfeat" / "xfeat.pt"
LONDON = DATA / "images" / "superglue" / "phototourism" / "london_bridge_19481797_2295892421.jpg"
IMAGES = {"cats": EXAMPLE, "london_bridge": LONDON}


@pytest.fixture(scope="module")
def model() -> XFeat:
    return keypoints.load_model("xfeat", backend="torch")


def kornia_xfeat(**options):
    """kornia's XFeat with the released file loaded into it (its from_pretrained downloads)."""
    kornia_feature = pytest.importorskip("kornia.feature")
    reference = kornia_feature.XFeat(**options)
    reference.net.load_state_dict(torch.load(require(RELEASED), weights_only=True))
    return reference.eval()


def nearest(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to, and index of, the nearest of ``theirs (M, 2)`` for each of ``ours (N, 2)``."""
    distances = torch.cdist(
        ours.double(), theirs.double(), compute_mode="donot_use_mm_for_euclid_dist"
    )
    return distances.min(dim=1)


def test_smoke(model):
    torch.manual_seed(0)
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 96, 128))
    n = int(out["mask"].sum())
    assert out["keypoints"].dtype == torch.float32 and out["keypoints"].shape == (1, n, 2)
    assert out["scores"].shape == (1, n) and out["mask"].dtype == torch.bool
    assert out["descriptors"].shape == (1, n, 64) and n > 0
    torch.testing.assert_close(out["descriptors"][0].norm(dim=-1), torch.ones(n))
    assert (out["scores"][0, :-1] >= out["scores"][0, 1:]).all()  # sorted, as the reference
    assert model.name == "xfeat" and model.descriptor_dim == 64
    assert model.matcher_weights == "xfeat-lighterglue" and model.license == "Apache-2.0"


@pytest.mark.parametrize("size", [(97, 130), (480, 641), (31, 45), (8, 8), (64, 64)])
def test_shapes_for_odd_sizes(model, size):
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    feats = keypoints.detect(image, model, resize=None, max_keypoints=50)[0]
    assert feats.image_size == (size[1], size[0])
    assert feats.descriptors.shape == (len(feats), 64) and len(feats) <= 50
    if len(feats):
        k = feats.keypoints
        assert (k[:, 0] >= 0).all() and (k[:, 0] <= size[1] - 1).all()
        assert (k[:, 1] >= 0).all() and (k[:, 1] <= size[0] - 1).all()


def test_batch_equals_single_images(model):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 97, 130)
    with torch.inference_mode():
        batched = model(images, max_keypoints=40)
    assert batched["keypoints"].shape[:2] == batched["mask"].shape == (3, 40)
    assert_batch_equals_singles(model, images, max_keypoints=40)


def test_image_sizes_crop_each_image(model):
    """With valid sizes smaller than the batch, each image is processed cropped to its own."""
    torch.manual_seed(0)
    images = torch.rand(2, 3, 100, 140)
    sizes = torch.tensor([[100, 140], [70, 90]])
    with torch.inference_mode():
        out = model(images, sizes)
        alone = model(images[1:, :, :70, :90])
    n = int(alone["mask"].sum())
    assert int(out["mask"][1].sum()) == n
    torch.testing.assert_close(out["keypoints"][1, :n], alone["keypoints"][0, :n])
    assert (out["keypoints"][1, :n, 0] <= 89).all() and (out["keypoints"][1, :n, 1] <= 69).all()


def test_blank_image_gives_no_keypoints(model):
    with torch.inference_mode():
        out = model(torch.full((2, 3, 64, 96), 0.5))
    assert out["keypoints"].shape[1] == out["descriptors"].shape[1] == 0


def test_options_and_aliases():
    assert XFeatConfig(top_k=100, detection_threshold=0.1) == XFeatConfig(
        max_keypoints=100, threshold=0.1
    )
    feats = keypoints.detect(str(EXAMPLE), "xfeat", top_k=300)[0]
    assert len(feats) == 300
    with pytest.raises(keypoints.ConfigError, match="did you mean 'max_keypoints'"):
        keypoints.detect(str(EXAMPLE), "xfeat", max_keypionts=3)
    with pytest.raises(keypoints.ConfigError, match=r"\[0, 1\]"):
        keypoints.detect(str(EXAMPLE), "xfeat", threshold=2)
    with pytest.raises(keypoints.ConfigError, match="max_keypoints"):
        XFeatConfig(max_keypoints=0)
    with pytest.raises(keypoints.ConfigError, match="nms_radius"):
        XFeatConfig(nms_radius=0)
    with pytest.raises(keypoints.ConfigError, match="XFeat expects"):
        XFeat()(torch.rand(1, 2, 64, 64))


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_strict_maxima_equal_kornia_nms2d(radius):
    nms2d = pytest.importorskip("kornia.geometry.subpix").nms2d
    torch.manual_seed(0)
    scores = torch.rand(2, 41, 57)
    scores[0, 10:15, 10:15] = 2.0  # a plateau at the top: no maximum
    scores[1, 20, 30] = scores[1, 21, 31] = 3.0  # a tie
    scores = scores.round(decimals=2)  # more ties
    k = 2 * radius + 1
    expected = nms2d(scores[:, None], (k, k), mask_only=True)[:, 0]
    assert torch.equal(strict_maxima(scores, radius), expected)
    assert not strict_maxima(torch.rand(1, 2 * radius, 9), radius).any()


def test_bundled_weights_are_the_released_ones():
    bundled = load_state_dict(bundled_weights())
    released = torch.load(require(RELEASED), weights_only=True)
    assert bundled.keys() == released.keys() and len(bundled) == 122
    assert all(torch.equal(bundled[k], released[k]) for k in bundled)
    model = XFeat.from_pretrained(str(RELEASED))  # the .pt loads strictly too
    assert all(torch.equal(v, released[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("image", list(IMAGES))
@pytest.mark.parametrize("options", [{}, {"max_keypoints": 1000, "threshold": 0.1}])
def test_matches_kornia(image, options):
    """On the released weights, ``keypoints.detect`` at native size gives kornia's
    ``detectAndCompute`` keypoints (to 0.05 px), scores and descriptors (to 1e-4)."""
    path = require(IMAGES[image])
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    reference = kornia_xfeat()
    with torch.inference_mode():
        expected = reference.detectAndCompute(
            torch.from_numpy(rgb).permute(2, 0, 1)[None],
            top_k=options.get("max_keypoints", 4096),
            detection_threshold=options.get("threshold", 0.05),
        )[0]
    feats = keypoints.detect(str(path), "xfeat", resize=None, **options)[0]
    assert feats.model == "xfeat"
    assert len(feats) == len(expected["keypoints"])
    distance, index = nearest(feats.keypoints, expected["keypoints"].float())
    assert (distance < 0.05).float().mean() >= 0.99
    close = distance < 0.05
    torch.testing.assert_close(
        feats.descriptors[close], expected["descriptors"][index[close]], atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        feats.scores[close], expected["scores"][index[close]], atol=1e-4, rtol=0
    )


def test_detect_public_api():
    feats = keypoints.detect(str(require(LONDON)), "xfeat")[0]
    width, height = Image.open(LONDON).size
    assert feats.model == "xfeat" and feats.image_size == (width, height)
    assert feats.descriptors.shape == (len(feats), 64) and 0 < len(feats) <= 4096
    k = feats.keypoints
    assert (k >= 0).all() and (k[:, 0] <= width - 1).all() and (k[:, 1] <= height - 1).all()
    assert "xfeat" in {m["name"] for m in keypoints.list_models()}
