"""Everything the README's Python examples show runs, with the Hub served from a local cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import torch
from conftest import ROOT, random_superpoint
from test_weights import fill_hub_cache

LIGHTGLUE_REPO = "ETH-CVG/lightglue_superpoint"


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def stand_in_lightglue(directory, cache):
    """Random LightGlue weights in the layouts the README's examples load: a transformers
    folder (with a random SuperPoint) for the Hub id, and a release-named file of cvg's ALIKED
    weights in keypoints' download cache. Final projections are a scaled identity so that
    similar descriptors match."""
    from keypoints.hf_lightglue import (
        LightGlueConfig,
        LightGlueForKeypointMatching,
        LightGlueImageProcessor,
    )
    from keypoints.models.lightglue import LightGlueMatcher

    torch.manual_seed(0)
    # the released checkpoint's detector settings are 2048 keypoints, threshold 0.0005
    detector = {"max_keypoints": 1024, "keypoint_threshold": 0.0005}
    model = LightGlueForKeypointMatching(LightGlueConfig(keypoint_detector_config=detector))
    model.keypoint_detector.load_state_dict(random_superpoint().state_dict())
    aliked = LightGlueMatcher(input_dim=128)
    with torch.no_grad():
        for net in (model, aliked):
            for layer in net.match_assignment_layers:
                layer.final_projection.weight.copy_(8 * torch.eye(256))
    model.save_pretrained(directory)
    LightGlueImageProcessor().save_pretrained(directory)
    cache.mkdir()
    torch.save(aliked.state_dict(), cache / "aliked_lightglue_v0-1_arxiv.pth")


def test_readme_python_examples_run(tmp_path, random_checkpoint):
    blocks = python_blocks()
    assert len(blocks) == 7
    guide = next(i for i, b in enumerate(blocks) if "post_process_keypoint_detection" in b)
    fill_hub_cache(tmp_path / "hub", random_checkpoint)
    stand_in_lightglue(tmp_path / "lightglue", tmp_path / "cache")
    fill_hub_cache(tmp_path / "hub", tmp_path / "lightglue", LIGHTGLUE_REPO)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / "hubconf.py", tmp_path / "hubconf.py")  # torch.hub.load(".", ...)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "KEYPOINTS_CACHE": str(tmp_path / "cache"),
        "MPLBACKEND": "Agg",
    }
    for i, block in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(block)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert "Keypoints: tensor([" in subprocess.run(
        [sys.executable, str(tmp_path / f"block{guide}.py")], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    assert (tmp_path / "output_image.png").stat().st_size > 0
    assert (tmp_path / "cats_keypoints.png").stat().st_size > 0
    assert (tmp_path / "lightglue_matches.png").stat().st_size > 0
