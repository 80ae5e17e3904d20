"""SuperPoint network and the shared ops: shapes, odd sizes, reference algorithms, real weights."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import EXAMPLE, PARTIAL_SUPERPOINT, random_superpoint, require

from keypoints import SuperPoint, SuperPointConfig, SuperPointImageProcessor, WeightsError
from keypoints.models import ops
from keypoints.models.superpoint import convert_state_dict, to_transformers_state_dict
from keypoints.models.weights import load_state_dict


def test_smoke_and_batch_shapes():
    model = random_superpoint()
    image = torch.rand(3, 1, 64, 96)
    out = model(image)
    b, n = out["mask"].shape
    assert b == 3
    assert out["keypoints"].shape == (3, n, 2) and out["keypoints"].dtype == torch.float32
    assert out["scores"].shape == (3, n) and out["descriptors"].shape == (3, n, 256)
    assert out["mask"].dtype == torch.bool and out["mask"].any()
    valid = out["mask"]
    norms = out["descriptors"][valid].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert (out["descriptors"][~valid] == 0).all() and (out["scores"][~valid] == 0).all()
    kp = out["keypoints"][valid]
    assert (kp[:, 0] >= 4).all() and (kp[:, 0] < 96 - 4).all()
    assert (kp[:, 1] >= 4).all() and (kp[:, 1] < 64 - 4).all()


def test_batch_matches_single_images():
    model = random_superpoint(max_keypoints=50)
    images = torch.rand(3, 1, 48, 56)
    batched = model(images)
    for i in range(3):
        single = model(images[i : i + 1])
        n = int(single["mask"].sum())
        assert int(batched["mask"][i].sum()) == n
        torch.testing.assert_close(batched["keypoints"][i, :n], single["keypoints"][0, :n])
        torch.testing.assert_close(batched["descriptors"][i, :n], single["descriptors"][0, :n])


def test_image_sizes_limit_keypoints_to_valid_region():
    model = random_superpoint(threshold=0.0, border=2)
    out = model(torch.rand(2, 1, 64, 64), torch.tensor([[64, 64], [40, 24]]))
    kp = out["keypoints"][1][out["mask"][1]]
    assert len(kp) > 0
    assert kp[:, 0].max() < 24 - 2 and kp[:, 1].max() < 40 - 2


def test_tiny_image_gives_zero_keypoints():
    out = random_superpoint()(torch.rand(1, 1, 8, 8))
    assert out["keypoints"].shape == (1, 0, 2) and out["descriptors"].shape == (1, 0, 256)


def test_wrong_input_shape():
    from keypoints import ConfigError

    with pytest.raises(ConfigError, match=r"\(B, 1, H, W\)"):
        random_superpoint()(torch.rand(1, 3, 16, 16))


def test_key_maps_round_trip():
    state = random_superpoint().state_dict()
    hf = to_transformers_state_dict(state)
    assert (
        "encoder.conv_blocks.3.conv_b.weight" in hf and "keypoint_decoder.conv_score_b.bias" in hf
    )
    assert convert_state_dict(hf).keys() == state.keys()
    prefixed = {f"module.{k}": v for k, v in state.items()}
    assert convert_state_dict(prefixed).keys() == state.keys()


def test_real_weights_descriptor_value():
    """Released SuperPoint encoder + descriptor head (no detector head), see SOURCES.md:
    transformers' integration test expects -0.1095 at (x=480, y=9) of the cats image."""
    state = load_state_dict(require(PARTIAL_SUPERPOINT))
    model = SuperPoint()
    with pytest.raises(WeightsError) as info:
        model.load_weights(state)
    for key in ("convPa.weight", "convPa.bias", "convPb.weight", "convPb.bias"):
        assert key in str(info.value)
    assert "strict=False" in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(state, strict=False)
    assert any("convPa.weight" in str(w.message) for w in caught)
    torch.testing.assert_close(model.conv1a.weight, state["conv1a.weight"])

    pixels = SuperPointImageProcessor(do_resize=False)(
        str(EXAMPLE), return_tensors="pt"
    ).pixel_values
    assert pixels.shape == (1, 3, 480, 640)
    with torch.no_grad():
        dense = model.dense_descriptors(model.encode(pixels[:, :1]))
        value = ops.sample_descriptors(torch.tensor([[[480.0, 9.0]]]), dense)[0, 0, 0]
    assert abs(value.item() - (-0.1095)) < 5e-4


def test_weights_errors_name_keys():
    model = SuperPoint()
    state = model.state_dict()
    bad = dict(state)
    bad["convDb.weight"] = torch.zeros(128, 256, 1, 1)
    with pytest.raises(WeightsError, match=r"wrong shapes for convDb.weight \(checkpoint \(128"):
        model.load_weights(bad)
    extra = {**state, "convX.weight": torch.zeros(1)}
    with pytest.raises(WeightsError, match="unexpected keys convX.weight"):
        model.load_weights(extra)
    with pytest.raises(WeightsError, match="wrong shapes"):
        SuperPoint(SuperPointConfig(descriptor_decoder_dim=128)).load_weights(state)
