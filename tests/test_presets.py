"""Presets: every preset runs end to end on the example pair (when its weights are available
offline) and recovers the known warp; `keypoints presets` lists them all; --preset applies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import DATA, EXAMPLE, require

import keypoints
from keypoints.evaluation import corner_error
from keypoints.models.lightglue import release_file
from keypoints.presets import PRESETS

WARPED = EXAMPLE.parent / "cats_warped.jpg"
TRUTH = np.loadtxt(EXAMPLE.parent / "cats_H.txt")


@pytest.fixture
def release_cache(tmp_path, monkeypatch):
    """keypoints' cache holding cvg's real DISK LightGlue weights (from ../shared/data), as
    after a first download (ALIKED's are bundled); the other releases are absent (offline:
    those presets skip)."""
    weights = require(DATA / "weights" / "lightglue" / "disk_lightglue.pth")
    monkeypatch.setenv("KEYPOINTS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    shutil.copy(weights, tmp_path / "cache" / release_file("disk"))
    from keypoints import matching

    monkeypatch.setattr(matching, "_MATCHERS", {})
    return tmp_path / "cache"


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_recovers_the_example_warp(name, release_cache):
    preset = keypoints.load_preset(name)
    if not preset.offline:
        pytest.skip(f"preset {name} needs weights that are not available offline here")
    f0, f1, matches = preset.match_images(str(EXAMPLE), str(WARPED))
    assert f0.model == f1.model == preset.detector and f0.fingerprint == f1.fingerprint
    limit = preset.options.get("max_keypoints")
    assert 0 < len(f0) <= limit and 0 < len(f1) <= limit
    assert (matches.scores is not None) == (preset.matcher == "lightglue")
    fit = keypoints.verify(f0, f1, matches, "homography", 3.0)
    assert fit.num_inliers > 100, (name, len(matches), fit.num_inliers)
    assert corner_error(fit.matrix, TRUTH, f0.image_size) < 3.0


def test_the_bundled_and_cached_presets_are_offline(release_cache):
    offline = {name for name, preset in PRESETS.items() if preset.offline}
    # ALIKED, DISK, XFeat and OpenCV are bundled, and so are ALIKED's LightGlue and XFeat's
    # LighterGlue; DISK's LightGlue is in the cache; SIFT's and the Magic Leap SuperPoint are not
    assert offline == {"aliked-lightglue", "aliked-mnn", "sift-mnn", "disk-lightglue",
                       "xfeat-lighterglue", "fast"}  # fmt: skip


def test_presets_command_lists_them_all(release_cache, capsys):
    from keypoints.cli import main

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert name in out and preset.description in out
    assert "noncommercial" in out and "Apache-2.0" in out
    assert main(["presets", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == list(PRESETS)
    by_name = {e["name"]: e for e in entries}
    assert by_name["aliked-lightglue"]["matcher_weights"] == "aliked"
    assert by_name["aliked-lightglue"]["offline"] is True
    assert by_name["superpoint-lightglue"]["offline"] is False


def test_preset_options_and_errors():
    preset = keypoints.load_preset("fast")
    assert keypoints.load_preset(preset) is preset
    assert preset.load_detector().config.max_keypoints == 1024
    assert preset.load_detector(max_keypoints=7).config.max_keypoints == 7
    features = preset.detect(str(EXAMPLE))[0]
    assert len(features) == 1024 and features.image_size == (640, 480)
    assert keypoints.load_preset("sift-mnn").matcher_options == {"ratio": 0.8}
    with pytest.raises(keypoints.ConfigError, match="did you mean 'sift-mnn'"):
        keypoints.load_preset("sift-nmn")
