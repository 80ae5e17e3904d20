"""ALIKED: numbers of the reference implementation, the deformable convolution, shapes, and a
quality check against ground-truth homographies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA, EXAMPLE, require

import keypoints
from keypoints.models.aliked import ALIKED, VARIANTS, bundled_weights
from keypoints.models.weights import load_state_dict

LONDON = DATA / "images" / "superglue" / "phototourism" / "london_bridge_19481797_2295892421.jpg"
IMAGES = {"cats": EXAMPLE, "london_bridge": LONDON}
OPTIONS = {  # the reference's two modes, as LightGlue maps them onto our option names
    "threshold": {"max_keypoints": 5000, "threshold": 0.2},  # top_k=-1, scores_th=0.2, n_limit=5000
    "topk": {"max_keypoints": 1024, "threshold": 0.0},  # top_k=1024
}

# How these numbers were obtained (2026-11-25): the reference code Shiaoming/ALIKED at commit
# 683d7c65 (nets/aliked.py, blocks.py, padder.py, soft_detect.py), unmodified, was run in a
# scratch folder on CPU with the released .pth weights (../shared/data/weights/aliked, the
# same bytes as the bundled safetensors), `ALIKED(model_name, device="cpu", top_k=..,
# scores_th=0.2, n_limit=5000).run(rgb)` on the RGB image at its native size. Its
# torchvision.ops.deform_conv2d (compiled, does not load here) was replaced by
# keypoints.models.ops.deform_conv2d after checking that one as in the two tests below;
# torchvision's resnet.conv1x1/conv3x3 and ToTensor were stood in by their plain definitions,
# and the custom get_patches op was absent, so the reference used its own Python fallback.
# Stored: keypoint count, the first five keypoints (x, y) and scores, the first descriptor's
# first six values. Over all keypoints, keypoints.detect agreed to 1.2e-4 px, scores to 2e-5,
# descriptors to 5e-6 (aliked-n16 and -t16, both modes, both images).
EXPECTED = {
    "aliked-n16/threshold/cats": {
        "count": 1166,
        "keypoints": [
            [470.0858, 19.7017],
            [342.194, 20.8361],
            [462.9778, 24.0361],
            [206.0526, 28.123],
            [245.3582, 28.7653],
        ],
        "scores": [0.4812, 0.20846, 0.37789, 0.20509, 0.30636],
        "descriptors": [0.02883, 0.02726, 0.13657, 0.04708, 0.0005, 0.13225],
    },
    "aliked-n16/topk/london_bridge": {
        "count": 1024,
        "keypoints": [
            [611.0615, 845.1359],
            [256.8717, 800.0626],
            [712.1357, 822.7776],
            [641.4282, 825.0664],
            [490.9746, 697.0175],
        ],
        "scores": [0.94764, 0.93754, 0.92194, 0.94582, 0.96181],
        "descriptors": [0.00691, -0.03651, -0.10665, -0.02715, -0.09617, -0.14419],
    },
    "aliked-n16/threshold/london_bridge": {
        "count": 1253,
        "keypoints": [
            [403.0267, 225.59],
            [401.0831, 230.6395],
            [401.9459, 235.0257],
            [406.9925, 245.0123],
            [401.0493, 245.939],
        ],
        "scores": [0.82364, 0.74285, 0.21987, 0.89579, 0.91974],
        "descriptors": [-0.07266, -0.16149, 0.02102, 0.26391, -0.10626, 0.01617],
    },
    "aliked-t16/threshold/london_bridge": {
        "count": 1415,
        "keypoints": [
            [403.4569, 225.7844],
            [400.8957, 230.8329],
            [405.7821, 230.8099],
            [404.9698, 235.7517],
            [400.7971, 237.1866],
        ],
        "scores": [0.89471, 0.92169, 0.84603, 0.8347, 0.2037],
        "descriptors": [-0.12688, -0.1498, -0.12803, -0.26645, -0.20202, -0.10414],
    },
    "aliked-t16/topk/cats": {
        "count": 1024,
        "keypoints": [
            [406.8538, 209.1952],
            [269.7354, 195.4519],
            [267.8845, 182.2695],
            [282.8559, 222.9179],
            [106.2317, 237.9758],
        ],
        "scores": [0.92631, 0.91145, 0.92722, 0.93293, 0.93768],
        "descriptors": [0.08457, 0.04422, -0.04401, 0.10042, 0.19345, 0.0855],
    },
    "aliked-n32/threshold/cats": {
        "count": 672,
        "keypoints": [
            [484.0616, 31.8713],
            [475.9891, 38.4483],
            [507.3794, 42.5489],
            [450.8331, 45.0106],
            [456.6872, 45.6707],
        ],
        "scores": [0.67373, 0.90734, 0.79018, 0.19278, 0.63639],
        "descriptors": [0.21291, 0.00447, -0.06395, -0.05946, 0.07455, 0.04438],
    },
    "aliked-n16rot/threshold/cats": {
        "count": 1077,
        "keypoints": [
            [487.2486, 26.0753],
            [505.8467, 29.9339],
            [444.725, 32.1433],
            [511.72, 32.1838],
            [482.6799, 34.2914],
        ],
        "scores": [0.27709, 0.25459, 0.26372, 0.3212, 0.672],
        "descriptors": [-0.02806, -0.01588, 0.25307, -0.08731, -0.07297, 0.04029],
    },
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_matches_reference_numbers(key):
    variant, mode, image = key.split("/")
    expected = EXPECTED[key]
    feats = keypoints.detect(str(require(IMAGES[image])), variant, resize=None, **OPTIONS[mode])[0]
    assert len(feats) == expected["count"]
    kpts = feats.keypoints.numpy()
    for i, (xy, score) in enumerate(zip(expected["keypoints"], expected["scores"])):
        j = int(np.argmin(np.linalg.norm(kpts - np.asarray(xy), axis=1)))  # order-free in top-k
        assert np.linalg.norm(kpts[j] - np.asarray(xy)) < 0.05
        assert abs(float(feats.scores[j]) - score) < 1e-3
        if i == 0:
            got = feats.descriptors[j, :6].numpy()
            np.testing.assert_allclose(got, expected["descriptors"], atol=1e-3)
    assert feats.descriptors.shape == (expected["count"], VARIANTS[variant][4])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bundled_weights_are_the_released_ones(variant):
    bundled = load_state_dict(bundled_weights(variant))
    released = load_state_dict(require(DATA / "weights" / "aliked" / f"{variant}.pth"))
    assert bundled.keys() == released.keys()
    assert all(torch.equal(bundled[k], released[k]) for k in bundled)
    model = keypoints.load_model(variant)
    assert model.name == variant and model.descriptor_dim == VARIANTS[variant][4]


def test_path_loading_recognises_the_variant():
    keypoints.models.registry.clear_cache()
    model = keypoints.load_model(str(require(DATA / "weights" / "aliked" / "aliked-n32.pth")))
    assert isinstance(model, ALIKED) and model.config.model_name == "aliked-n32"


@pytest.mark.parametrize("size", [(45, 77), (100, 37), (33, 33), (8, 8), (480, 641)])
def test_shapes_for_sizes_not_multiple_of_32(size):
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    feats = keypoints.detect(image, "aliked-t16", resize=None, threshold=0.0, max_keypoints=50)[0]
    assert feats.image_size == (size[1], size[0])
    assert feats.descriptors.shape == (len(feats), 64) and len(feats) <= 50
    if len(feats):
        k = feats.keypoints
        assert (k[:, 0] >= 0).all() and (k[:, 0] <= size[1] - 1).all()
        assert (k[:, 1] >= 0).all() and (k[:, 1] <= size[0] - 1).all()


def test_batch_equals_single_images():
    model = keypoints.load_model("aliked-t16")
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 96)
    with torch.inference_mode():
        batched = model(images, max_keypoints=40, threshold=0.0)
        for i in range(3):
            single = model(images[i : i + 1], max_keypoints=40, threshold=0.0)
            n = int(single["mask"].sum())
            assert int(batched["mask"][i].sum()) == n
            torch.testing.assert_close(batched["keypoints"][i, :n], single["keypoints"][0, :n])
            torch.testing.assert_close(
                batched["descriptors"][i, :n], single["descriptors"][0, :n], atol=1e-5, rtol=0
            )


def test_descriptor_head_batched_equals_single_images():
    """The head's batched path (taken off the CPU, where images are not split) gives each
    image's descriptors alone."""
    from keypoints.models.aliked import FeatureMaps

    model = keypoints.load_model("aliked-n16")
    torch.manual_seed(0)
    images, size = torch.rand(2, 3, 96, 128), (96, 128)
    keypoints_ = torch.rand(2, 50, 2) * torch.tensor([120.0, 90.0]) + 3
    with torch.inference_mode():
        _, *levels = model.dense(images)
        batched = model.desc_head(FeatureMaps(tuple(levels), (0, 0), size), keypoints_)
        for i in range(2):
            alone = FeatureMaps(tuple(level[i : i + 1] for level in levels), (0, 0), size)
            single = model.desc_head(alone, keypoints_[i : i + 1])
            torch.testing.assert_close(batched[i : i + 1], single, atol=1e-5, rtol=0)


def test_top_k_mode_returns_exactly_k_and_options_are_checked():
    feats = keypoints.detect(str(EXAMPLE), "aliked-n16", max_keypoints=300, threshold=0.0)[0]
    assert len(feats) == 300
    with pytest.raises(keypoints.ConfigError, match="did you mean 'nms_radius'"):
        keypoints.detect(str(EXAMPLE), "aliked-n16", nms_raduis=3)
    with pytest.raises(keypoints.ConfigError, match=r"\[0, 1\]"):
        keypoints.detect(str(EXAMPLE), "aliked-n16", threshold=2)


def test_backends_give_identical_results():
    """The onnxruntime NMS (used when it is installed) is exact, and the dense maps stay in
    torch, so both settings return the same keypoints and descriptors."""
    pytest.importorskip("onnxruntime")
    fast = keypoints.load_model("aliked-t16", backend="auto")
    plain = keypoints.load_model("aliked-t16", backend="torch")
    assert fast.nms_backend == "onnxruntime" and plain.nms_backend == "torch"
    a = keypoints.detect(str(EXAMPLE), fast, max_keypoints=500)[0]
    b = keypoints.detect(str(EXAMPLE), plain, max_keypoints=500)[0]
    assert torch.equal(a.keypoints, b.keypoints) and torch.equal(a.descriptors, b.descriptors)


def full_feature_map(model, image):
    """The reference's dense path: every scale upsampled to full resolution, concatenated, fed
    to the whole score head and L2-normalised (what FeatureMaps avoids building)."""
    scores, *levels = model.dense_torch(image)
    up = {"mode": "bilinear", "align_corners": True}
    full = torch.cat(
        [levels[0]]
        + [F.interpolate(x, scale_factor=f, **up) for x, f in zip(levels[1:], (2, 8, 32))],
        dim=1,
    )
    left, _, top, _ = model.padding(*image.shape[-2:])
    crop = (slice(top, top + image.shape[-2]), slice(left, left + image.shape[-1]))
    reference_scores = torch.sigmoid(model.score_head(full))[:, 0, crop[0], crop[1]]
    features = F.normalize(full, p=2, dim=1)[:, :, crop[0], crop[1]]
    return scores, reference_scores, levels, features


@pytest.mark.parametrize("size", [(64, 96), (45, 77)])
def test_sparse_features_equal_the_full_map(size):
    """The score head applied per scale equals it on the upsampled concatenation, and
    FeatureMaps.at/.sample equal indexing/bilinear sampling of the full normalised map."""
    from keypoints.models.aliked import FeatureMaps
    from keypoints.models.ops import sample_map

    model = keypoints.load_model("aliked-n16", backend="torch")
    torch.manual_seed(0)
    image = torch.rand(2, 3, *size)
    with torch.inference_mode():
        scores, reference_scores, levels, full = full_feature_map(model, image)
        torch.testing.assert_close(scores, reference_scores, atol=1e-5, rtol=0)
        left, _, top, _ = model.padding(*size)
        maps = FeatureMaps(tuple(levels), (left, top), size)
        height, width = size
        x = torch.randint(0, width, (2, 50))
        y = torch.randint(0, height, (2, 50))
        expected = torch.stack([full[b, :, y[b], x[b]].T for b in range(2)])
        torch.testing.assert_close(maps.at(x, y), expected, atol=1e-5, rtol=0)
        # sub-pixel positions, some outside the image (zeros there, as grid_sample)
        positions = torch.rand(2, 60, 2) * torch.tensor([width + 4.0, height + 4.0]) - 2
        torch.testing.assert_close(
            maps.sample(positions), sample_map(full, positions), atol=1e-5, rtol=0
        )
