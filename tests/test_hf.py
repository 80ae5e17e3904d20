"""The transformers-compatible surface, checked number for number against transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import COCO, EXAMPLE, random_superpoint, require
from PIL import Image

import keypoints
from keypoints import (
    ConfigError,
    ImageError,
    SuperPointForKeypointDetection,
    SuperPointImageProcessor,
)
from keypoints.models.superpoint import to_transformers_state_dict

transformers = pytest.importorskip("transformers")


def transformers_twin(ours):
    """transformers' SuperPoint with our weights and config."""
    config = transformers.SuperPointConfig(**ours.config.to_dict())
    model = transformers.SuperPointForKeypointDetection(config).eval()
    model.load_state_dict(to_transformers_state_dict(ours.state_dict()), strict=True)
    return model


def canonical_order(outputs):
    """Sort each image's keypoints by (score desc, y, x). The order is already identical in
    both libraries except among equal scores under a top-k cut, where torch.topk's order
    (transformers) is unspecified and ours is row-major; this makes the comparison exact."""
    order = []
    for kp, sc, m in zip(outputs.keypoints, outputs.scores, outputs.mask):
        n = int(m.sum())
        keys = np.lexsort((kp[:n, 0].numpy(), kp[:n, 1].numpy(), -sc[:n].numpy()))
        order.append(torch.cat([torch.from_numpy(keys), torch.arange(n, len(m))]))
    order = torch.stack(order)
    for name in ("keypoints", "scores", "descriptors", "mask"):
        value = getattr(outputs, name)
        index = order.view(*order.shape, *[1] * (value.ndim - 2)).expand_as(value)
        setattr(outputs, name, value.gather(1, index))
    return outputs


@pytest.mark.parametrize("do_grayscale", [True, False])
@pytest.mark.parametrize("max_keypoints,threshold", [(-1, 0.005), (256, 0.0)])
def test_parity_with_transformers(coco_images, do_grayscale, max_keypoints, threshold):
    ours = random_superpoint(
        SuperPointForKeypointDetection, max_keypoints=max_keypoints, keypoint_threshold=threshold
    )
    theirs = transformers_twin(ours)
    sizes = [(im.height, im.width) for im in coco_images]

    their_proc = transformers.SuperPointImageProcessor(do_grayscale=do_grayscale)
    our_proc = SuperPointImageProcessor(do_grayscale=do_grayscale)
    their_inputs = their_proc(coco_images, return_tensors="pt")
    our_inputs = our_proc(coco_images, return_tensors="pt")
    torch.testing.assert_close(
        our_inputs["pixel_values"], their_inputs["pixel_values"], atol=1e-5, rtol=0
    )

    with torch.no_grad():
        expected = theirs(**their_inputs)
        got = ours(**our_inputs)
    if max_keypoints < 0:  # no top-k cut: the very same (row-major) order
        assert torch.equal(got.keypoints, expected.keypoints)
    expected, got = canonical_order(expected), canonical_order(got)
    assert got.keypoints.shape == expected.keypoints.shape
    assert expected.mask.sum() > 100  # the comparison is not vacuous
    assert got.mask.dtype == torch.int32
    for name in ("keypoints", "scores", "descriptors"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), atol=1e-5, rtol=0)
    assert torch.equal(got.mask, expected.mask)
    if max_keypoints > 0:
        assert got.keypoints.shape[1] == max_keypoints

    for g, e in zip(
        our_proc.post_process_keypoint_detection(got, sizes),
        their_proc.post_process_keypoint_detection(expected, sizes),
    ):
        assert g["keypoints"].dtype == e["keypoints"].dtype == torch.int32
        assert torch.equal(g["keypoints"], e["keypoints"])
        torch.testing.assert_close(g["scores"], e["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(g["descriptors"], e["descriptors"], atol=1e-5, rtol=0)


def test_guide_flow_runs_unchanged(coco_images):
    """The transformers guide's lines, with keypoints in place of transformers."""
    processor = SuperPointImageProcessor()
    model = random_superpoint(SuperPointForKeypointDetection)
    inputs = processor(coco_images, return_tensors="pt").to(model.device, model.dtype)
    outputs = model(**inputs)
    sizes = [(image.height, image.width) for image in coco_images]
    results = processor.post_process_keypoint_detection(outputs, sizes)
    assert len(results) == 2
    for result, (h, w) in zip(results, sizes):
        k = result["keypoints"]
        assert k.ndim == 2 and k.shape[1] == 2 and len(k) == len(result["scores"]) > 0
        assert result["descriptors"].shape == (len(k), 256)
        assert (k[:, 0] < w).all() and (k[:, 1] < h).all() and (k >= 0).all()
    assert outputs[0] is outputs.keypoints and outputs["mask"] is outputs.mask
    as_tuple = model(**inputs, return_dict=False)
    assert len(as_tuple) == 4 and torch.equal(as_tuple[0], outputs.keypoints)
    hidden = model(**inputs, output_hidden_states=True).hidden_states
    assert [h.shape[1] for h in hidden] == [64, 64, 128, 128]


def test_batch_feature_to_casts_floats_only():
    batch = keypoints.BatchFeature(
        pixel_values=torch.zeros(1, 3, 8, 8), ids=torch.zeros(2, dtype=torch.long)
    )
    moved = batch.to("cpu", torch.float64)
    assert moved.pixel_values.dtype == torch.float64 and moved["ids"].dtype == torch.long


@pytest.mark.parametrize(
    "make",
    [
        lambda a: Image.fromarray(a),
        lambda a: a,  # numpy H x W x 3 uint8
        lambda a: np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]),  # H x W x 4
        lambda a: torch.from_numpy(a.copy()).permute(2, 0, 1),  # C x H x W tensor
    ],
    ids=["pil", "numpy-rgb", "numpy-rgba", "tensor-chw"],
)
def test_processor_input_types_agree(make):
    array = np.asarray(Image.open(require(COCO[0])).convert("RGB"))
    reference = SuperPointImageProcessor()(Image.fromarray(array), return_tensors="pt").pixel_values
    got = SuperPointImageProcessor()(make(array), return_tensors="pt").pixel_values
    assert got.shape == (1, 3, 480, 640)
    torch.testing.assert_close(got, reference, atol=0, rtol=0)


def test_processor_grayscale_float_and_path_inputs(tmp_path):
    gray = (np.arange(50 * 70) % 256).astype(np.uint8).reshape(50, 70)
    out = SuperPointImageProcessor(size={"height": 24, "width": 32})(
        [gray, gray / 255.0], return_tensors="pt"
    )
    values = out.pixel_values
    assert values.shape == (2, 3, 24, 32)
    assert torch.equal(values[:, 0], values[:, 1])
    torch.testing.assert_close(values[0], values[1], atol=1.5 / 255, rtol=0)  # 8-bit rounding
    Image.fromarray(gray).save(tmp_path / "g.png")
    from_path = SuperPointImageProcessor(size=(24, 32))(
        str(tmp_path / "g.png"), return_tensors="np"
    )
    np.testing.assert_array_equal(from_path["pixel_values"][0], values[0].numpy())
    # 16-bit input is scaled to [0, 1], not clipped
    deep = gray.astype(np.uint16) * 257
    v16 = SuperPointImageProcessor(do_resize=False)(deep, return_tensors="pt").pixel_values
    torch.testing.assert_close(v16[0, 0], torch.from_numpy(gray / 255.0).float(), atol=1e-6, rtol=0)


def test_processor_errors():
    with pytest.raises(ConfigError, match="do_grayscale"):
        SuperPointImageProcessor(do_greyscale=True)
    with pytest.raises(ImageError, match="different sizes"):
        SuperPointImageProcessor(do_resize=False)(
            [np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)], return_tensors="pt"
        )
    with pytest.raises(ImageError, match="channels"):
        SuperPointImageProcessor()(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ConfigError, match="target sizes"):
        model = random_superpoint(SuperPointForKeypointDetection)
        out = model(torch.rand(2, 3, 32, 32))
        SuperPointImageProcessor().post_process_keypoint_detection(out, [(32, 32)])


def test_config_overrides_and_unknown_options(random_checkpoint):
    config = keypoints.SuperPointConfig.from_pretrained(random_checkpoint, max_keypoints=300)
    assert config.max_keypoints == 300 and config.nms_radius == 4
    model = SuperPointForKeypointDetection.from_pretrained(random_checkpoint, max_keypoints=7)
    out = model(torch.rand(1, 3, 64, 80))
    assert out.keypoints.shape[1] <= 7
    with pytest.raises(ConfigError, match="did you mean 'max_keypoints'"):
        keypoints.SuperPointConfig(max_keypoint=3)
    with pytest.raises(ConfigError, match="max_keypoints=0 is out of range"):
        keypoints.SuperPointConfig(max_keypoints=0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        keypoints.SuperPointConfig(keypoint_threshold=1.5)


def test_save_pretrained_loads_in_transformers(tmp_path, coco_images):
    ours = random_superpoint(SuperPointForKeypointDetection, max_keypoints=100)
    ours.save_pretrained(tmp_path)
    SuperPointImageProcessor().save_pretrained(tmp_path)
    theirs = transformers.SuperPointForKeypointDetection.from_pretrained(tmp_path).eval()
    assert theirs.config.max_keypoints == 100
    their_proc = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    assert their_proc.do_grayscale is True
    inputs = SuperPointImageProcessor()(coco_images[:1], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            ours(**inputs).descriptors, theirs(**inputs).descriptors, atol=1e-5, rtol=0
        )


def test_load_what_transformers_saves(tmp_path, coco_images):
    torch.manual_seed(1)
    theirs = transformers.SuperPointForKeypointDetection(
        transformers.SuperPointConfig(nms_radius=3)
    ).eval()
    theirs.save_pretrained(tmp_path)
    transformers.SuperPointImageProcessor(do_grayscale=True).save_pretrained(tmp_path)
    ours = keypoints.AutoModelForKeypointDetection.from_pretrained(tmp_path, backend="torch")
    assert isinstance(ours, SuperPointForKeypointDetection) and ours.config.nms_radius == 3
    processor = keypoints.AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, SuperPointImageProcessor) and processor.do_grayscale
    inputs = processor(coco_images[1:], return_tensors="pt")
    with torch.no_grad():
        expected, got = theirs(**inputs), ours(**inputs)
    torch.testing.assert_close(got.keypoints, expected.keypoints, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.descriptors, expected.descriptors, atol=1e-5, rtol=0)


def test_auto_config_dispatch(random_checkpoint, tmp_path):
    assert isinstance(
        keypoints.AutoConfig.from_pretrained(random_checkpoint), keypoints.SuperPointConfig
    )
    (tmp_path / "config.json").write_text('{"model_type": "superglue"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="superglue"):
        keypoints.AutoModelForKeypointDetection.from_pretrained(tmp_path)


@pytest.mark.parametrize("name", ["aliked-n16", "disk"])
def test_registered_names_follow_the_guide_flow(name):
    """AutoImageProcessor/AutoModel take a registry name; the guide's three steps give the
    keypoints of keypoints.detect at the processor's 480x640 (to transformers' int rounding)."""
    from keypoints.hf import KeypointDetectionModel

    image = Image.open(EXAMPLE)
    processor = keypoints.AutoImageProcessor.from_pretrained(name)
    model = keypoints.AutoModelForKeypointDetection.from_pretrained(name, max_keypoints=500)
    assert isinstance(model, KeypointDetectionModel)
    assert isinstance(keypoints.AutoModel.from_pretrained(name), KeypointDetectionModel)
    inputs = processor([image, image.rotate(180)], return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 480, 640)  # RGB for these detectors
    outputs = model(**inputs)
    assert outputs.keypoints.shape[:2] == outputs.mask.shape and outputs.keypoints.max() <= 1
    sizes = [(image.height, image.width)] * 2
    result = processor.post_process_keypoint_detection(outputs, sizes)[0]
    ours = keypoints.detect(image, name, resize=(480, 640), max_keypoints=500)[0]
    assert len(result["keypoints"]) == len(ours)
    np.testing.assert_allclose(result["scores"].numpy(), ours.scores.numpy(), atol=1e-5)
    # cats.png is 640x480: relative * size, truncated to int as transformers' post-processing
    assert (result["keypoints"].float() - ours.keypoints).abs().max() <= 1.0


def test_registered_name_errors():
    with pytest.raises(keypoints.ConfigError, match="OpenCV detector"):
        keypoints.AutoModel.from_pretrained("sift")
    with pytest.raises(keypoints.ConfigError, match="unknown option"):
        keypoints.AutoModel.from_pretrained("aliked-n16", max_keypoint=5)
    model = keypoints.AutoModel.from_pretrained("aliked-n16")
    with pytest.raises(keypoints.ImageError, match=r"\(B, C, H, W\)"):
        model(pixel_values=torch.rand(3, 64, 64))
