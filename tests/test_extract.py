"""Bulk extraction: hloc's HDF5 layout, equality with detect, resume after a kill, bad images."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from conftest import DATA, EXAMPLE, require

import keypoints
from keypoints.pipeline import extract_report, list_images
from keypoints.io.hloc import list_names, read_features

OPTIONS = {"model": "aliked-t16", "resize": 320, "max_keypoints": 200}


@pytest.fixture
def image_dir(tmp_path):
    """Real images in a nested folder: two at the top, two in sub/, one in sub/deeper/."""
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    coco = sorted((require(DATA / "images" / "coco")).glob("*.png"))
    icl = sorted((DATA / "images" / "icl_snippet").glob("*.png"))
    shutil.copy(EXAMPLE, root / "cats.png")
    shutil.copy(icl[0], root / "icl.png")
    shutil.copy(coco[0], root / "sub" / "coco0.png")
    shutil.copy(coco[1], root / "sub" / "coco1.PNG")
    shutil.copy(icl[1], root / "sub" / "deeper" / "icl1.png")
    (root / "notes.txt").write_text("not an image")
    return root


def read_all(path) -> dict[str, dict[str, np.ndarray]]:
    with h5py.File(path, "r") as f:
        return {n: {k: f[n][k][()] for k in f[n]} for n in list_names(f)}


def test_layout_matches_hloc_and_detect(image_dir, tmp_path):
    output = keypoints.extract(image_dir, tmp_path / "features.h5", progress=False, **OPTIONS)
    assert output == tmp_path / "features.h5"
    names = ["cats.png", "icl.png", "sub/coco0.png", "sub/coco1.PNG", "sub/deeper/icl1.png"]
    with h5py.File(output, "r") as f:
        assert sorted(list_names(f)) == names
        assert isinstance(f["sub"], h5py.Group) and isinstance(f["sub/deeper"], h5py.Group)
        config = f.attrs["keypoints_config"]
        assert '"model": "aliked-t16"' in config and '"max_keypoints": 200' in config
    expected = keypoints.detect(
        [image_dir / n for n in names], "aliked-t16", resize=320, max_keypoints=200
    )
    data = read_all(output)
    for name, ref in zip(names, expected):
        group = data[name]
        assert group["keypoints"].dtype == np.float32 and group["keypoints"].shape == (len(ref), 2)
        assert group["descriptors"].shape == (64, len(ref))  # hloc: (D, N)
        np.testing.assert_array_equal(group["image_size"], ref.image_size)  # (width, height)
        np.testing.assert_array_equal(group["keypoints"], ref.keypoints.numpy())
        np.testing.assert_array_equal(group["scores"], ref.scores.numpy())
        np.testing.assert_array_equal(group["descriptors"], ref.descriptors.numpy().T)
        back = read_features(output, name)
        assert torch.equal(back.keypoints, ref.keypoints)


def test_half_descriptors_keep_float32_keypoints(image_dir, tmp_path):
    output = keypoints.extract(
        image_dir, tmp_path / "f.h5", half_descriptors=True, progress=False, **OPTIONS
    )
    with h5py.File(output, "r") as f:
        assert f["cats.png/descriptors"].dtype == np.float16
        assert f["cats.png/keypoints"].dtype == np.float32


def test_text_file_of_paths_and_skipping(image_dir, tmp_path):
    listing = image_dir / "list.txt"
    listing.write_text("# two images\ncats.png\n\nsub/coco0.png\n")
    root, names = list_images(listing)
    assert root == image_dir and names == ["cats.png", "sub/coco0.png"]
    output = tmp_path / "f.h5"
    first = extract_report(listing, output, progress=False, **OPTIONS)
    assert (first.extracted, first.skipped) == (2, 0)
    second = extract_report(image_dir, output, progress=False, **OPTIONS)
    assert (second.extracted, second.skipped) == (3, 2)
    assert len(list_names(output)) == 5
    again = extract_report(image_dir, output, overwrite=True, progress=False, **OPTIONS)
    assert (again.extracted, again.skipped) == (5, 0)


def test_other_settings_are_refused(image_dir, tmp_path):
    output = keypoints.extract(image_dir, tmp_path / "f.h5", progress=False, **OPTIONS)
    with pytest.raises(keypoints.ConfigError, match="other settings.*--overwrite"):
        keypoints.extract(image_dir, output, progress=False, **{**OPTIONS, "max_keypoints": 50})
    keypoints.extract(
        image_dir, output, overwrite=True, progress=False, **{**OPTIONS, "max_keypoints": 50}
    )
    assert max(len(g["scores"]) for g in read_all(output).values()) == 50


def test_bad_images_are_reported_and_skipped(image_dir, tmp_path):
    data = (image_dir / "cats.png").read_bytes()
    (image_dir / "truncated.png").write_bytes(data[: len(data) // 3])
    (image_dir / "empty.jpg").write_bytes(b"")
    report = extract_report(image_dir, tmp_path / "f.h5", progress=False, **OPTIONS)
    assert report.extracted == 5
    assert sorted(n for n, _ in report.errors) == ["empty.jpg", "truncated.png"]
    lines = (tmp_path / "f.h5.errors.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == ["empty.jpg", "truncated.png"]
    assert all("\t" in line and line.split("\t")[1] for line in lines)
    assert "truncated.png" not in list_names(tmp_path / "f.h5")


def test_cli_extract_exit_codes(image_dir, tmp_path):
    from keypoints.cli import main

    out = tmp_path / "f.h5"
    args = ["extract", str(image_dir), "-o", str(out), "-m", "aliked-t16", "--resize", "320"]
    assert main([*args, "--max-keypoints", "100", "--workers", "0"]) == 0
    assert len(list_names(out)) == 5
    (image_dir / "broken.jpg").write_bytes(b"not a jpeg")
    assert main([*args, "--max-keypoints", "100"]) == 2  # a bad image: reported, exit 2
    assert len(list_names(out)) == 5
    assert main(["extract", str(tmp_path / "missing"), "-o", str(out)]) == 2


def test_list_images_errors(tmp_path):
    with pytest.raises(keypoints.ImageNotFoundError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(keypoints.ConfigError, match="no images found"):
        list_images(tmp_path / "empty")


def _run(image_dir, output, **popen):
    command = [sys.executable, "-m", "keypoints", "extract", str(image_dir), "-o", str(output),
               "-m", "aliked-t16", "--resize", "320", "--max-keypoints", "200",
               "--shard-size", "1", "--workers", "1"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)


def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path):
    """Kill the extraction (SIGKILL) part way, check the existing output still opens, rerun,
    and compare with an uninterrupted run."""
    root = tmp_path / "images"
    root.mkdir()
    sources = [EXAMPLE, *sorted(require(DATA / "images" / "icl_snippet").glob("*.png"))]
    for i in range(40):
        shutil.copy(sources[i % len(sources)], root / f"{i:02d}.png")
    reference = tmp_path / "reference.h5"
    assert _run(root, reference).wait(timeout=600) == 0

    output = tmp_path / "features.h5"
    # an earlier complete run on a few of the images (a list file beside them)
    (root / "first.txt").write_text("\n".join(f"{i:02d}.png" for i in range(4)))
    assert _run(root / "first.txt", output).wait(timeout=600) == 0
    before = read_all(output)
    assert len(before) == 4

    process = _run(root, output)
    parts = tmp_path / "features.h5.parts"
    deadline = time.time() + 300
    while len(list(parts.glob("shard-*.h5"))) < 3 and process.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert read_all(output).keys() == before.keys()  # the output is intact and unchanged

    assert _run(root, output).wait(timeout=600) == 0
    assert not parts.exists()
    got, expected = read_all(output), read_all(reference)
    assert got.keys() == expected.keys() and len(got) == 40
    for name in expected:
        for key in expected[name]:
            np.testing.assert_array_equal(got[name][key], expected[name][key])


def test_ray_engine_gives_the_local_result(image_dir, tmp_path):
    """A local Ray instance, two model actors, one shard per block of 2 images."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'keypoints[ray]')")
    (image_dir / "broken.jpg").write_bytes(b"not a jpeg")
    local = extract_report(image_dir, tmp_path / "local.h5", progress=False, **OPTIONS)
    ray = extract_report(image_dir, tmp_path / "ray.h5", engine="ray", workers=2, shard_size=2,
                         progress=False, **OPTIONS)  # fmt: skip
    assert ray.extracted == local.extracted == 5
    assert [n for n, _ in ray.errors] == [n for n, _ in local.errors] == ["broken.jpg"]
    got, expected = read_all(tmp_path / "ray.h5"), read_all(tmp_path / "local.h5")
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name]["keypoints"], expected[name]["keypoints"])
        np.testing.assert_array_equal(got[name]["image_size"], expected[name]["image_size"])
        # actors run torch on one thread, this process on two: sums in another order
        for key in ("scores", "descriptors"):
            np.testing.assert_allclose(got[name][key], expected[name][key], atol=1e-5, rtol=0)
