"""Devices: "auto" resolves as hloc and LightGlue users expect; unavailable ones fail clearly."""

from __future__ import annotations

import pytest
import torch
from conftest import DATA, require

import keypoints
from keypoints.devices import auto_device, resolve_device
from keypoints.models.registry import load_model


def test_auto_picks_cuda_when_available_else_cpu(monkeypatch):
    assert resolve_device(None) is None
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu") == auto_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("AUTO") == torch.device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_unavailable_and_unknown_devices_are_one_clear_error():
    with pytest.raises(keypoints.ConfigError, match="device 'cuda' is not available: this torch"):
        resolve_device("cuda")
    with pytest.raises(keypoints.ConfigError, match="'gpu0' is not a torch device"):
        resolve_device("gpu0")
    with pytest.raises(keypoints.ConfigError, match="not available"):
        load_model("aliked-t16", device="cuda:1")
    with pytest.raises(keypoints.ConfigError, match="not available"):
        keypoints.matching.load_matcher("aliked", "cuda")
    assert load_model("sift", device="auto").name == "sift"  # OpenCV: the CPU "auto" allows
    assert next(load_model("aliked-t16", device="auto").parameters()).device.type == "cpu"


@pytest.mark.parametrize("command", ["match", "match-pairs", "eval"])
def test_every_matching_command_takes_device(command, tmp_path, capsys):
    """--device on match, match-pairs and eval, with the same message for a missing device."""
    from keypoints.cli import main

    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    args = {
        "match": ["match", str(graf / "img1.ppm"), str(graf / "img2.ppm"), "-o",
                  str(tmp_path / "m.png")],
        "match-pairs": ["match-pairs", str(tmp_path / "f.h5"), "--exhaustive", "-o",
                        str(tmp_path / "m.h5"), "--matcher", "lightglue"],
        "eval": ["eval", "homography", str(graf.parent), "-o", str(tmp_path / "r")],
    }[command]  # fmt: skip
    if command == "match-pairs":
        keypoints.extract([graf / "img1.ppm", graf / "img2.ppm"], tmp_path / "f.h5",
                          "aliked-n16", resize=320, max_keypoints=200, progress=False)  # fmt: skip
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main([*args, "--device", "cuda:3"]) == 2
    assert "device 'cuda:3' is not available" in capsys.readouterr().err


def test_python_api_defaults_to_auto_and_leaves_objects_where_they_are(monkeypatch):
    """detect/load_model/load_matcher default to "auto"; objects passed in are not moved."""
    import keypoints.devices as devices
    from keypoints.matching import load_matcher
    from keypoints.models.lightglue import LightGlue
    from keypoints.models.registry import clear_cache

    net = load_model("aliked-t16", device="cpu")
    glue = LightGlue.from_pretrained("aliked")  # its own copy: .to() moves in place
    monkeypatch.setattr(devices, "auto_device", lambda: torch.device("meta"))  # a fake "GPU"
    clear_cache()
    try:
        assert next(load_model("aliked-t16").parameters()).device.type == "meta"
        assert next(load_model(net).parameters()).device.type == "cpu"  # given: stays
        assert next(load_matcher(glue).parameters()).device.type == "cpu"
        image = torch.rand(3, 64, 80)
        assert len(keypoints.detect(image, net)[0].keypoints) > 0  # ran where net is
    finally:
        clear_cache()
