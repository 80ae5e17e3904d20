"""The model registry, `keypoints models`, offline use of the default model, and the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from conftest import EXAMPLE, ROOT

import keypoints


def test_list_models():
    entries = {e["name"]: e for e in keypoints.list_models()}
    assert set(entries) >= {"superpoint", "superpoint-open", "sift", "orb", "aliked-n16"}
    assert set(entries["aliked-n16"]) == {
        "name",
        "kind",
        "descriptor_dim",
        "binary",
        "license",
        "weights",
        "matcher_weights",
        "offline",
    }
    # which LightGlue weights fit each detector's descriptors: the registry's answer
    assert entries["aliked-n16"]["matcher_weights"] == "aliked"
    assert entries["sift"]["matcher_weights"] == entries["rootsift"]["matcher_weights"] == "sift"
    assert entries["aliked-t16"]["matcher_weights"] is None and entries["orb"]["binary"]
    assert (
        entries["aliked-n16"]["offline"] is True and entries["aliked-n16"]["descriptor_dim"] == 128
    )
    assert entries["aliked-t16"]["descriptor_dim"] == 64
    assert "noncommercial" in entries["superpoint"]["license"]
    assert entries["superpoint-open"]["license"] == "MIT"
    assert entries["sift"]["kind"] == "handcrafted" and entries["orb"]["descriptor_dim"] == 32


def test_load_model_with_options_shares_weights():
    base = keypoints.load_model("aliked-t16")
    tuned = keypoints.load_model("aliked-t16", max_keypoints=10, threshold=0.0)
    assert tuned.config.max_keypoints == 10 and base.config.max_keypoints == -1
    assert tuned.block1.conv1.weight is base.block1.conv1.weight
    assert len(keypoints.detect(str(EXAMPLE), tuned)[0]) == 10
    with pytest.raises(keypoints.ConfigError, match="did you mean"):
        keypoints.load_model("aliked-t16", max_keypoint=3)


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "keypoints", *map(str, args)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def test_wheel_contains_weights_and_license(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("keypoints-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for variant in ("aliked-t16", "aliked-n16", "aliked-n16rot", "aliked-n32"):
        assert f"keypoints/weights/{variant}.safetensors" in names
    assert "keypoints/weights/LICENSE-ALIKED" in names and "keypoints/weights/README.md" in names
