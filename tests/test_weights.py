"""Finding and loading weights: Hub cache (offline), Hub-layout folders, Magic Leap and
transformers key names, and checkpoints that are unsafe, truncated or missing."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import EXAMPLE, random_superpoint
from safetensors.torch import save_file

import keypoints
from keypoints import SuperPoint, WeightsError, WeightsNotFoundError
from keypoints.models.superpoint import to_transformers_state_dict
from keypoints.models.weights import load_state_dict, resolve_checkpoint

REPO = "magic-leap-community/superpoint"


def fill_hub_cache(cache: pathlib.Path, checkpoint: pathlib.Path, repo: str = REPO) -> None:
    """Lay out ``checkpoint``'s files as huggingface_hub's cache does after a download."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(checkpoint, root / "snapshots" / commit)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_hub_id_from_prefilled_cache_offline(tmp_path, random_checkpoint):
    """A fresh process with HF_HUB_OFFLINE=1 and HF_HUB_CACHE pointing at a filled cache: the
    Hub id, the Auto classes and `detect`'s default model all load without a network."""
    fill_hub_cache(tmp_path / "hub", random_checkpoint)
    script = f"""
import keypoints, torch
model = keypoints.AutoModelForKeypointDetection.from_pretrained({REPO!r}, max_keypoints=10)
processor = keypoints.AutoImageProcessor.from_pretrained({REPO!r})
assert model.config.max_keypoints == 10 and processor.do_grayscale
feats = keypoints.detect({str(EXAMPLE)!r})[0]
ref = keypoints.SuperPoint.from_pretrained({str(random_checkpoint)!r})
assert torch.equal(ref.conv1a.weight, model.conv1a.weight)
print(len(feats), feats.image_size)
"""
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    count, size = result.stdout.split(" ", 1)
    assert int(count) > 0 and size.strip() == "(640, 480)"


def test_hub_id_with_cache_dir_argument(tmp_path, random_checkpoint):
    fill_hub_cache(tmp_path, random_checkpoint, repo="someone/superpoint-copy")
    model = SuperPoint.from_pretrained("someone/superpoint-copy", cache_dir=tmp_path)
    assert same_weights(model, SuperPoint.from_pretrained(random_checkpoint))


def test_offline_and_not_cached_gives_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        SuperPoint.from_pretrained("nobody/not-cached-anywhere", cache_dir=tmp_path)
    message = str(info.value)
    assert "not in the local cache" in message and "local checkpoint path" in message
    assert "nobody/not-cached-anywhere" in message


def test_local_dir_and_files(tmp_path, random_checkpoint):
    reference = SuperPoint.from_pretrained(random_checkpoint)
    # Magic Leap superpoint_v1.pth: a plain state dict with conv1a ... convDb names
    torch.save(reference.state_dict(), tmp_path / "superpoint_v1.pth")
    assert same_weights(SuperPoint.from_pretrained(tmp_path / "superpoint_v1.pth"), reference)
    # a single .safetensors with transformers' names, and one with Magic Leap's names
    hf_names = to_transformers_state_dict(reference.state_dict())
    save_file({k: v.contiguous() for k, v in hf_names.items()}, tmp_path / "hf.safetensors")
    assert same_weights(SuperPoint.from_pretrained(tmp_path / "hf.safetensors"), reference)
    save_file(dict(reference.state_dict()), tmp_path / "ml.safetensors")
    assert same_weights(SuperPoint.from_pretrained(str(tmp_path / "ml.safetensors")), reference)
    # a wrapped checkpoint {"state_dict": ...} and a Hub folder with pytorch_model.bin
    torch.save({"state_dict": hf_names, "epoch": 3}, tmp_path / "wrapped.pth")
    assert same_weights(SuperPoint.from_pretrained(tmp_path / "wrapped.pth"), reference)
    folder = tmp_path / "bin_layout"
    folder.mkdir()
    torch.save(hf_names, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"model_type": "superpoint", "nms_radius": 2}))
    loaded = SuperPoint.from_pretrained(folder)
    assert loaded.config.nms_radius == 2 and same_weights(loaded, reference)


def test_save_load_round_trip(tmp_path):
    model = random_superpoint(keypoints.SuperPointForKeypointDetection, max_keypoints=42)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = keypoints.SuperPointForKeypointDetection.from_pretrained(tmp_path, backend="torch")
    assert loaded.config == model.config and same_weights(loaded, model)
    image = torch.rand(1, 3, 40, 48)
    torch.testing.assert_close(loaded(image).descriptors, model(image).descriptors, rtol=0, atol=0)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"conv1a.weight": _Payload(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(WeightsError, match="refused|not a readable"):
        load_state_dict(path)
    with pytest.raises(WeightsError):
        SuperPoint.from_pretrained(path)
    assert not marker.exists(), "the checkpoint's code ran"


def test_truncated_and_missing_files(tmp_path, random_checkpoint):
    data = (random_checkpoint / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        SuperPoint.from_pretrained(tmp_path / "cut.safetensors")
    buffer = tmp_path / "full.pth"
    torch.save(SuperPoint().state_dict(), buffer)
    (tmp_path / "cut.pth").write_bytes(buffer.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        SuperPoint.from_pretrained(tmp_path / "cut.pth")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        keypoints.load_model(str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsNotFoundError, match="has no weights"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(keypoints.ConfigError, match="did you mean 'superpoint'"):
        keypoints.load_model("superpont")


def test_cached_hub_weights_load_without_contacting_the_hub(tmp_path, random_checkpoint):
    """Online mode, but the endpoint is a closed local port: cached files are used first, so
    loading neither waits for nor needs the network."""
    fill_hub_cache(tmp_path / "hub", random_checkpoint)
    script = f"import keypoints; keypoints.SuperPoint.from_pretrained({REPO!r}); print('ok')"
    env = {
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
