"""The MIT SuperPoint (rpautrat/SuperPoint): key layout, cached download, offline errors."""

from __future__ import annotations

import torch

import keypoints
from keypoints.models.superpoint_open import WEIGHTS_FILE, SuperPointOpen


def reference_layout_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with the key names and shapes of superpoint_v6_from_tf.pth, as the
    reference's superpoint_pytorch.py (VGG blocks: conv, activation, bn) lays it out."""
    torch.manual_seed(seed)
    channels, state = [1, 64, 64, 128, 128], {}

    def block(prefix, c_in, c_out, k):
        state[f"{prefix}.conv.weight"] = (
            torch.randn(c_out, c_in, k, k) * (2 / (c_in * k * k)) ** 0.5
        )
        state[f"{prefix}.conv.bias"] = torch.zeros(c_out)
        state[f"{prefix}.bn.weight"] = torch.ones(c_out) + 0.1 * torch.randn(c_out)
        state[f"{prefix}.bn.bias"] = 0.1 * torch.randn(c_out)
        state[f"{prefix}.bn.running_mean"] = 0.1 * torch.randn(c_out)
        state[f"{prefix}.bn.running_var"] = torch.rand(c_out) + 0.5
        state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(1000)

    for i in range(4):
        block(f"backbone.{i}.0", channels[i], channels[i + 1], 3)
        block(f"backbone.{i}.1", channels[i + 1], channels[i + 1], 3)
    block("detector.0", 128, 256, 3)
    block("detector.1", 256, 65, 1)
    block("descriptor.0", 128, 256, 3)
    block("descriptor.1", 256, 256, 1)
    return state


def test_loads_reference_layout(tmp_path):
    state = reference_layout_state()
    path = tmp_path / "superpoint_v6_from_tf.pth"
    torch.save(state, path)
    model = SuperPointOpen.from_pretrained(path)
    assert torch.equal(
        model.state_dict()["detector.1.bn.running_var"], state["detector.1.bn.running_var"]
    )
    keypoints.models.registry.clear_cache()
    sniffed = keypoints.load_model(str(path))  # recognised from its key names
    assert isinstance(sniffed, SuperPointOpen)
    image = torch.rand(1, 1, 64, 96)
    with torch.inference_mode():
        out = model(image, max_keypoints=20, threshold=0.0)
    assert out["keypoints"].shape == (1, 20, 2) and out["descriptors"].shape == (1, 20, 256)
    norms = out["descriptors"][0].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(20))


def test_descriptor_sampling_at_cell_centres(tmp_path):
    """rpautrat samples descriptors at cell centres: pixel 8j + 3.5 reads cell j exactly."""
    model = SuperPointOpen()
    dense = torch.nn.functional.normalize(torch.randn(1, 256, 4, 5), dim=1)
    kp = torch.tensor([[[8 * 2 + 3.5, 8 * 1 + 3.5]]])
    got = keypoints.models.ops.sample_map(dense, (kp + 0.5) / 8 - 0.5)[0, 0]
    torch.testing.assert_close(got, dense[0, :, 1, 2])
    assert model.preprocessing.pad_multiple == 8 and model.preprocessing.channels == 1


def test_cached_download_is_used_and_offline_errors_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYPOINTS_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        SuperPointOpen.from_pretrained()
        raise AssertionError("expected an error")
    except keypoints.WeightsNotFoundError as exc:
        assert "offline" in str(exc) and WEIGHTS_FILE in str(exc)
    assert not keypoints.models.registry.MODELS["superpoint-open"].available()
    torch.save(reference_layout_state(), tmp_path / WEIGHTS_FILE)  # as a finished download
    assert keypoints.models.registry.MODELS["superpoint-open"].available()
    model = SuperPointOpen.from_pretrained()
    assert isinstance(model, SuperPointOpen) and not model.training
