"""The Detector protocol (keypoints/models/protocol.py): every registered detector implements
it and its facts come from its registry entry; fingerprints identify weights and options."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import EXAMPLE, random_superpoint

import keypoints
from keypoints.image import to_array
from keypoints.models.protocol import Detector, fingerprint, state_digest
from keypoints.models.registry import MODELS

OFFLINE = [name for name, info in MODELS.items() if info.offline]


@pytest.mark.parametrize("name", OFFLINE)
def test_every_offline_detector_implements_the_protocol(name):
    info = MODELS[name]
    net = keypoints.load_model(name, max_keypoints=50)
    assert isinstance(net, Detector)
    assert net.info is info and net.name == name
    assert (net.descriptor_dim, net.binary, net.license) == (
        info.descriptor_dim, info.binary, info.license,
    )  # fmt: skip
    assert net.matcher_weights == info.matcher_weights and net.offline
    prepared = net.prepare(to_array(EXAMPLE), 320)
    expected_channels = info.preprocessing.channels
    assert prepared.image.ndim == (2 if expected_channels == 1 else 3)
    assert prepared.image.dtype == (np.uint8 if info.preprocessing.uint8 else np.float32)
    assert prepared.original == (480, 640) and prepared.size == (240, 320)
    (features,) = net.extract([prepared])
    assert features.model == name and features.fingerprint == net.fingerprint
    assert 0 < len(features) <= 50 and features.image_size == (640, 480)
    assert features.descriptors.shape == (len(features), info.descriptor_dim)
    assert features.keypoints.dtype == torch.float32
    assert float(features.keypoints[:, 0].max()) > 320  # in original-image pixels


def test_fingerprint_follows_weights_options_and_precision():
    a, b = random_superpoint(seed=1), random_superpoint(seed=2)
    assert a.fingerprint != b.fingerprint  # same architecture and options, other weights
    assert random_superpoint(seed=1).fingerprint == a.fingerprint  # same weights: same id
    tuned = keypoints.load_model(a, max_keypoints=10)
    assert tuned.fingerprint != a.fingerprint  # other options
    assert keypoints.load_model(a, max_keypoints=10).fingerprint == tuned.fingerprint
    before = a.fingerprint
    with torch.no_grad():
        a.convDb.bias.add_(1e-3)  # an in-place change of the weights is seen
    assert a.fingerprint != before
    assert len(a.fingerprint) == 12 and int(a.fingerprint, 16) >= 0
    sift = keypoints.load_model("sift")
    assert sift.fingerprint != keypoints.load_model("sift", max_keypoints=5).fingerprint
    assert fingerprint("X", {"a": 1}) == fingerprint("X", {"a": 1}) != fingerprint("X", {"a": 2})


def test_pickling_keeps_the_fingerprint():
    """What the Ray engine relies on: a detector shipped to another process is the same."""
    net = keypoints.load_model("aliked-t16", max_keypoints=20)
    net.extract([net.prepare(to_array(EXAMPLE), 160)])  # builds the onnxruntime session
    copy = pickle.loads(pickle.dumps(net))
    assert copy.fingerprint == net.fingerprint and copy._onnx is None
    assert state_digest(copy) == state_digest(net)
    image = net.prepare(to_array(EXAMPLE), 160)
    torch.testing.assert_close(copy.extract([image])[0].keypoints,
                               net.extract([image])[0].keypoints)  # fmt: skip


@pytest.mark.parametrize("name", ["aliked-t16", "sift"])
def test_extract_takes_one_image_as_lightglue(name):
    """model.extract(image) -> one Features, as LightGlue's extractor.extract(image); lists and
    (B, C, H, W) tensors give lists; the batch form of prepared images is unchanged."""
    from keypoints.models.registry import load_model

    net = load_model(name)
    one = net.extract(EXAMPLE)
    assert isinstance(one, keypoints.Features)
    assert one == keypoints.detect(EXAMPLE, name)[0]
    tensor = torch.from_numpy(to_array(EXAMPLE).copy()).permute(2, 0, 1).float() / 255
    assert net.extract(tensor, resize=320).image_size == (640, 480)
    assert len(net.extract(tensor[None], resize=320)) == 1
    two = net.extract([EXAMPLE, tensor], resize=None)
    assert [len(f) for f in two] == [len(keypoints.detect(EXAMPLE, name, resize=None)[0])] * 2
    prepared = net.prepare(to_array(EXAMPLE), 320)
    assert net.extract(prepared) == net.extract([prepared])[0]
    assert net.extract([]) == []
