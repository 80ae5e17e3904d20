"""DISK: the numbers of kornia's implementation on the released weights, shapes for batches and
odd sizes, the padded region, options, and the public API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA, EXAMPLE, assert_batch_equals_singles, require

import keypoints
from keypoints.image import to_array, to_float
from keypoints.models.disk import DISK, _strict_maxima, bundled_weights
from keypoints.models.weights import load_state_dict

RELEASE = DATA / "weights" / "disk" / "disk-depth-save.pth"
LONDON = DATA / "images" / "superglue" / "phototourism" / "london_bridge_19481797_2295892421.jpg"
IMAGES = {"cats": EXAMPLE, "london_bridge": LONDON}
# our options -> kornia.feature.DISK.forward's (n, window_size, score_threshold)
MODES = {
    "top2048": ({"max_keypoints": 2048, "threshold": 0.0}, (2048, 5, 0.0)),
    "all": ({"max_keypoints": -1, "threshold": 0.0}, (None, 5, 0.0)),
    "window3": ({"max_keypoints": 1000, "threshold": 1.0, "nms_radius": 1}, (1000, 3, 1.0)),
    "negative": ({"max_keypoints": -1, "threshold": -2.0}, (None, 5, -2.0)),
}
CASES = [
    "cats/top2048",
    "london_bridge/top2048",
    "cats/all",
    "cats/negative",
    "london_bridge/window3",
]


@pytest.fixture(scope="module")
def model():
    return keypoints.load_model("disk")


@pytest.fixture(scope="module")
def kornia_disk():
    kornia = pytest.importorskip("kornia")
    reference = kornia.feature.DISK()
    reference.load_state_dict(
        torch.load(require(RELEASE), map_location="cpu", weights_only=True)["extractor"]
    )
    return reference.eval()


def rgb(path) -> torch.Tensor:
    """``(1, 3, H, W)`` float in [0, 1], decoded as keypoints decodes it."""
    return torch.from_numpy(to_float(to_array(str(require(path))))).permute(2, 0, 1)[None]


def test_bundled_weights_are_the_released_ones():
    bundled = load_state_dict(bundled_weights())
    released = load_state_dict(require(RELEASE))
    assert len(bundled) == 26 and bundled.keys() == released.keys()
    assert all(torch.equal(bundled[k], released[k].cpu()) for k in bundled)
    disk = keypoints.load_model("disk")
    assert isinstance(disk, DISK) and disk.name == "disk" and disk.descriptor_dim == 128
    assert disk.matcher_weights == "disk" and disk.license == "Apache-2.0"


def test_release_and_converted_files_load_by_path(tmp_path):
    from safetensors.torch import save_file

    disk = DISK.from_pretrained(require(RELEASE))  # {"extractor": ...}, weights_only
    assert isinstance(disk, DISK) and not disk.training
    path = tmp_path / "disk.safetensors"
    save_file(load_state_dict(bundled_weights()), path)
    keypoints.models.registry.clear_cache()
    loaded = keypoints.load_model(str(path))  # recognised by its unet.path_down keys
    assert isinstance(loaded, DISK)


@pytest.mark.parametrize("case", CASES)
def test_matches_kornia(case, model, kornia_disk):
    """Through keypoints.detect (zero padding to 16 in the preprocessing, the valid size passed
    along) against kornia's DISK on the same pixels with pad_if_not_divisible=True."""
    name, mode = case.split("/")
    options, (n, window, threshold) = MODES[mode]
    feats = keypoints.detect(str(require(IMAGES[name])), model, resize=None, **options)[0]
    with torch.inference_mode():
        expected = kornia_disk(
            rgb(IMAGES[name]), n=n, window_size=window, score_threshold=threshold,
            pad_if_not_divisible=True,
        )[0]  # fmt: skip
    assert len(feats) == len(expected.keypoints) > 100
    distance, nearest = torch.cdist(feats.keypoints, expected.keypoints.float()).min(1)
    close = distance < 0.05
    assert close.float().mean() >= 0.99
    descriptors = expected.descriptors[nearest[close]]
    assert (feats.descriptors[close] - descriptors).abs().max() < 1e-4
    scores = expected.detection_scores[nearest[close]]
    assert (feats.scores[close] - scores).abs().max() < 1e-3


def test_shapes_for_a_batch_and_odd_sizes(model):
    torch.manual_seed(0)
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 96), max_keypoints=50)
        assert out["keypoints"].shape[0] == 2 and out["keypoints"].shape[2] == 2
        n = out["mask"].shape[1]
        assert 0 < n <= 50 and out["keypoints"].dtype == torch.float32
        assert out["scores"].shape == (2, n) and out["mask"].dtype == torch.bool
        assert out["descriptors"].shape == (2, n, 128)
        odd = model(torch.rand(1, 3, 97, 130))
    k = odd["keypoints"][0][odd["mask"][0]]
    assert len(k) > 0 and (k == k.round()).all()
    assert (k[:, 0] >= 2).all() and (k[:, 0] <= 130 - 3).all()
    assert (k[:, 1] >= 2).all() and (k[:, 1] <= 97 - 3).all()
    norms = odd["descriptors"][0][odd["mask"][0]].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (16, 16), (17, 33), (45, 77)])
def test_small_images(size):
    """Images under 32 pixels (which kornia cannot run) are padded to 32; keypoints stay inside."""
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    feats = keypoints.detect(image, "disk", resize=None)[0]
    assert feats.image_size == (size[1], size[0]) and feats.descriptors.shape == (len(feats), 128)
    k = feats.keypoints
    assert (k[:, 0] >= 2).all() and (k[:, 0] <= size[1] - 3).all()
    assert (k[:, 1] >= 2).all() and (k[:, 1] <= size[0] - 3).all()


def test_batch_equals_single_images(model):
    torch.manual_seed(1)
    assert_batch_equals_singles(model, torch.rand(3, 3, 48, 80), max_keypoints=40)


def test_no_keypoints_in_the_padding(model):
    """An image padded by the caller to the next multiple of 16 (valid size given) gives the
    keypoints of the unpadded image, all inside it; padding beyond that keeps them inside."""
    torch.manual_seed(2)
    image = torch.rand(1, 3, 97, 130)
    sizes = torch.tensor([[97, 130]])
    with torch.inference_mode():
        alone = model(image, max_keypoints=-1)
        padded = model(F.pad(image, (0, 14, 0, 15)), sizes, max_keypoints=-1)
        wider = model(F.pad(image, (0, 46, 0, 31), value=1.0), sizes, max_keypoints=-1)
    assert torch.equal(padded["keypoints"], alone["keypoints"])
    torch.testing.assert_close(padded["descriptors"], alone["descriptors"], atol=1e-5, rtol=0)
    k = wider["keypoints"][0][wider["mask"][0]]
    assert len(k) > 0 and (k[:, 0] <= 130 - 3).all() and (k[:, 1] <= 97 - 3).all()


def test_strict_maxima_equal_a_literal_comparison():
    torch.manual_seed(3)
    scores = torch.randint(0, 6, (2, 23, 31)).float()  # many ties
    for radius in (1, 2, 3):
        k = 2 * radius + 1
        windows = F.unfold(scores[:, None], k, padding=radius)  # (B, k*k, H*W), zero-padded
        windows = windows.view(2, k * k, 23, 31)
        centre = (k * k) // 2
        others = torch.cat([windows[:, :centre], windows[:, centre + 1 :]], dim=1)
        expected = scores > others.max(1).values
        inner = (slice(None), slice(radius, -radius), slice(radius, -radius))
        assert torch.equal(_strict_maxima(scores, radius)[inner], expected[inner])


def test_options_and_their_errors():
    config = keypoints.load_model("disk").config
    assert (config.max_keypoints, config.threshold, config.nms_radius) == (2048, 0.0, 2)
    disk = keypoints.load_model("disk", max_num_keypoints=100, detection_threshold=-1.5)
    assert (disk.config.max_keypoints, disk.config.threshold) == (100, -1.5)
    assert keypoints.load_model("disk", nms_window_size=3).config.nms_radius == 1
    bad = [
        ({"nms_raduis": 3}, "did you mean 'nms_radius'"),
        ({"max_keypoints": 0}, "max_keypoints"),
        ({"threshold": float("inf")}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"nms_radius": 0}, "nms_radius"),
        ({"nms_window_size": 4}, "odd"),
        ({"nms_window_size": 5, "nms_radius": 1}, "disagree"),
    ]
    for options, message in bad:
        with pytest.raises(keypoints.ConfigError, match=message):
            keypoints.load_model("disk", **options)
    with pytest.raises(keypoints.ConfigError, match="nms_radius"):
        keypoints.load_model("disk")(torch.rand(1, 3, 32, 32), nms_radius=17)
    with pytest.raises(keypoints.ConfigError, match=r"\(B, 3, H, W\)"):
        keypoints.load_model("disk")(torch.rand(1, 1, 32, 32))


def test_detect_through_the_public_api():
    feats = keypoints.detect(str(EXAMPLE), "disk")[0]
    assert feats.model == "disk" and not feats.binary
    assert 100 < len(feats) <= 2048 and feats.descriptors.shape == (len(feats), 128)
    width, height = feats.image_size
    k = feats.keypoints
    assert k.dtype == torch.float32
    assert (k[:, 0] >= 0).all() and (k[:, 0] <= width - 1).all()
    assert (k[:, 1] >= 0).all() and (k[:, 1] <= height - 1).all()
    torch.testing.assert_close(feats.descriptors.norm(dim=-1), torch.ones(len(feats)))
    few = keypoints.detect(to_array(str(EXAMPLE)), "disk", max_keypoints=100)[0]
    assert len(few) == 100
