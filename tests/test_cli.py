"""The `keypoints` command, end to end in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import COCO, DATA, EXAMPLE, require

import keypoints


def run(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "keypoints.cli", *map(str, args)],
        capture_output=True, text=True, timeout=600, env=env, cwd=cwd,
    )  # fmt: skip


def test_version_and_help():
    result = run("--version")
    assert result.returncode == 0 and keypoints.__version__ in result.stdout
    result = run("detect", "--help")
    assert (
        result.returncode == 0
        and "--max-keypoints" in result.stdout
        and "--resize" in result.stdout
    )


def test_detect_end_to_end_with_bad_path(tmp_path, random_checkpoint):
    good = [EXAMPLE, require(COCO[1])]
    result = run(
        "detect", good[0], tmp_path / "missing.png", good[1], "--model", random_checkpoint,
        "--max-keypoints", 100, "-o", tmp_path / "out",
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "missing.png" in errors[0] and "does not exist" in errors[0]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["000000004016.npz", "000000004016.png", "cats.npz", "cats.png"]
    assert "640x480" in result.stdout and "100" in result.stdout

    # the file holds what the Python function returns for the same image and options
    with np.load(tmp_path / "out" / "cats.npz") as saved:
        expected = keypoints.detect(str(EXAMPLE), str(random_checkpoint), max_keypoints=100)[0]
        np.testing.assert_allclose(saved["keypoints"], expected.keypoints.numpy(), atol=1e-5)
        np.testing.assert_allclose(saved["descriptors"], expected.descriptors.numpy(), atol=1e-5)
        assert saved["image_size"].tolist() == [640, 480]
        assert saved["keypoints"].dtype == np.float32


def test_detect_json_native_resolution(tmp_path, random_checkpoint):
    result = run(
        "detect", EXAMPLE, "--model", random_checkpoint, "--resize", "none", "--format", "json",
        "--no-plot", "--threshold", "0.05", "-o", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    feats = keypoints.load_features(tmp_path / "cats.json")
    expected = keypoints.detect(str(EXAMPLE), str(random_checkpoint), resize=None, threshold=0.05)[
        0
    ]
    assert len(expected) > 0
    torch.testing.assert_close(feats.keypoints, expected.keypoints)
    assert not (tmp_path / "cats.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "/nowhere/superpoint_v1.pth"], "does not exist"),
        (["--model", "superpont"], "did you mean 'superpoint'"),
        (["--model", "superpoint"], "not in the local cache"),  # Hub offline, nothing cached
        (["--max-keypoints", "0"], "max_keypoints=0 is out of range"),
    ],
)
def test_user_errors_exit_2_in_one_line(tmp_path, random_checkpoint, args, message):
    if "--model" not in args:
        args = [*args, "--model", random_checkpoint]
    env_home = {"HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    os.environ.update(env_home)
    try:
        result = run("detect", EXAMPLE, *args, "-o", tmp_path)
    finally:
        os.environ.pop("HF_HUB_CACHE")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_bad_resize_is_a_usage_error(random_checkpoint):
    result = run("detect", EXAMPLE, "--resize", "big", "--model", random_checkpoint)
    assert result.returncode == 2 and "WIDTHxHEIGHT" in result.stderr


def test_match_command(tmp_path):
    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    out = tmp_path / "m.png"
    result = run("match", graf / "img1.ppm", graf / "img2.ppm", "--model", "sift",
                 "--verify", "homography", "-o", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("keypoints: ") and lines[1].startswith("matches: ")
    matches = int(lines[1].split(": ")[1])
    inliers = int(lines[2].split(": ")[1].split()[0])
    assert 0 < inliers <= matches and out.stat().st_size > 0
    result = run("match", graf / "img1.ppm", tmp_path / "missing.png", "-o", out)
    assert (
        result.returncode == 2
        and "missing.png" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_detect_batches_keep_going_past_a_bad_image(tmp_path, random_checkpoint):
    images = [EXAMPLE, tmp_path / "missing.png", require(COCO[1]), EXAMPLE]
    result = run(
        "detect", *images, "--model", random_checkpoint, "--batch-size", 2, "--no-plot",
        "--max-keypoints", 50, "-o", tmp_path / "out",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "missing.png" in errors[0]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["000000004016.npz", "cats.npz", "cats_2.npz"]
    single = keypoints.detect(str(EXAMPLE), str(random_checkpoint), max_keypoints=50)[0]
    for name in ("cats.npz", "cats_2.npz"):
        with np.load(tmp_path / "out" / name) as saved:
            np.testing.assert_allclose(saved["keypoints"], single.keypoints.numpy(), atol=1e-4)
