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
from conftest import DATA, EXAMPLE, random_superpoint, require

import keypoints
from keypoints.io.hloc import list_names, read_features
from keypoints.pipeline import extract_report, list_images

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


def test_list_images_errors(tmp_path):
    with pytest.raises(keypoints.ImageNotFoundError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(keypoints.ConfigError, match="no images found"):
        list_images(tmp_path / "empty")
    binary = tmp_path / "list.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(keypoints.ConfigError, match="not a list of image paths"):
        list_images(binary)


def test_list_file_with_absolute_paths(image_dir, tmp_path):
    """Absolute lines name the files they say (not paths under the list's folder), relative
    lines stay relative to the list's folder, and extraction finds every image."""
    lists = tmp_path / "lists"
    lists.mkdir()
    images = sorted(p for p in image_dir.iterdir() if p.suffix == ".png")[:2]
    (lists / "local.png").write_bytes(images[0].read_bytes())
    listing = lists / "images.txt"
    listing.write_text(f"{images[0]}\n# a comment\n{images[1]}\nlocal.png\n")
    root, names = list_images(listing)
    assert [root / n for n in names] == [*images, lists / "local.png"]
    report = extract_report(listing, tmp_path / "f.h5", progress=False, **OPTIONS)
    assert report.extracted == 3 and not report.errors


def _run(image_dir, output, **popen):
    command = [sys.executable, "-m", "keypoints", "extract", str(image_dir), "-o", str(output),
               "-m", "aliked-t16", "--resize", "320", "--max-keypoints", "200",
               "--shard-size", "1", "--workers", "1"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)


def _many_images(tmp_path, count: int):
    """A folder of ``count`` real images (copies of the example and the ICL frames)."""
    root = tmp_path / "images"
    root.mkdir()
    sources = [EXAMPLE, *sorted(require(DATA / "images" / "icl_snippet").glob("*.png"))]
    for i in range(count):
        shutil.copy(sources[i % len(sources)], root / f"{i:02d}.png")
    return root


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path):
    """Kill the extraction (SIGKILL) part way, check the existing output still opens, rerun,
    and compare with an uninterrupted run."""
    root = _many_images(tmp_path, 40)
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


@pytest.fixture
def ray_session(monkeypatch):
    """A local Ray instance whose actors run torch on as many threads as this process, so that
    their sums run in the same order and the results are bit for bit this process's."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'keypoints[ray]')")
    monkeypatch.setenv("KEYPOINTS_RAY_THREADS", str(torch.get_num_threads()))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def random_checkpoint_file(path, seed: int):
    """A SuperPoint checkpoint of random weights (Magic Leap key names) at ``path``."""
    from safetensors.torch import save_file

    state = random_superpoint(seed=seed).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def assert_same_features(got, expected):
    assert got.keys() == expected.keys() and got
    for name in expected:
        np.testing.assert_array_equal(got[name]["keypoints"], expected[name]["keypoints"])
        np.testing.assert_array_equal(got[name]["image_size"], expected[name]["image_size"])
        for key in ("scores", "descriptors"):
            np.testing.assert_allclose(got[name][key], expected[name][key], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_ray_engine_gives_the_local_result(image_dir, tmp_path, ray_session):
    """A local Ray instance, two model actors, one shard per block of 2 images: a bundled model
    by name, a SuperPoint checkpoint of random weights by path, and a model object. Actors get
    the detector that was loaded here (weights included), never one reloaded by name: the
    random weights give the local engine's features, not the released SuperPoint's."""
    (image_dir / "broken.jpg").write_bytes(b"not a jpeg")
    ckpt = random_checkpoint_file(tmp_path / "custom.safetensors", seed=3)
    sources = {
        "name": ("aliked-t16", {}),
        "checkpoint": (str(ckpt), {}),
        "object": (random_superpoint(seed=4), {}),
    }
    for label, (model, extra) in sources.items():
        options = {"resize": 320, "max_keypoints": 200, "progress": False, **extra}
        local = extract_report(image_dir, tmp_path / f"{label}-local.h5", model, **options)
        ray = extract_report(image_dir, tmp_path / f"{label}-ray.h5", model, engine="ray",
                             workers=2, shard_size=2, **options)  # fmt: skip
        assert ray.extracted == local.extracted == 5, label
        assert [n for n, _ in ray.errors] == [n for n, _ in local.errors] == ["broken.jpg"]
        assert ray.settings == local.settings
        assert_same_features(read_all(tmp_path / f"{label}-ray.h5"),
                             read_all(tmp_path / f"{label}-local.h5"))  # fmt: skip
    # the two random SuperPoints are different weights under one name: different features
    a = read_features(tmp_path / "checkpoint-ray.h5", "cats.png")
    b = read_features(tmp_path / "object-ray.h5", "cats.png")
    assert a.model == b.model == "superpoint" and a.fingerprint != b.fingerprint
    assert not np.array_equal(a.keypoints.numpy(), b.keypoints.numpy())


def test_resume_with_another_checkpoint_is_refused(image_dir, tmp_path):
    """Same name, other weights: the output and the shards of an interrupted run record the
    fingerprint, and a run with another checkpoint at the same path refuses to add to them,
    naming the field; --overwrite replaces them."""
    from keypoints.pipeline.settings import ExtractSettings
    from keypoints.pipeline.shards import ShardWriter

    ckpt = random_checkpoint_file(tmp_path / "model.safetensors", seed=5)
    output = tmp_path / "f.h5"
    options = {"resize": 320, "max_keypoints": 100, "progress": False}
    first = extract_report(image_dir / "sub", output, str(ckpt), **options)
    assert first.extracted == 3
    keypoints.models.registry.clear_cache()  # the path is the cache key: reload it
    random_checkpoint_file(ckpt, seed=6)
    with pytest.raises(keypoints.ConfigError, match=r"other settings.*fingerprint: '\w+' != '\w+'"):
        extract_report(image_dir / "sub", output, str(ckpt), **options)
    assert len(list_names(output)) == 3  # untouched

    # shards of an interrupted run with the first weights
    stale = ExtractSettings.from_json(first.settings.to_json())
    assert stale == first.settings
    with ShardWriter(tmp_path / "g.h5.parts", stale, shard_size=1) as writer:
        writer.add("coco0.png", read_features(output, "coco0.png"))
    with pytest.raises(keypoints.ConfigError, match="interrupted run's shard.*fingerprint"):
        extract_report(image_dir / "sub", tmp_path / "g.h5", str(ckpt), **options)
    done = extract_report(image_dir / "sub", tmp_path / "g.h5", str(ckpt), overwrite=True,
                          **options)  # fmt: skip
    assert done.extracted == 3 and done.settings.fingerprint != first.settings.fingerprint
    assert read_features(tmp_path / "g.h5", "coco0.png").fingerprint == done.settings.fingerprint


def test_settings_name_every_difference_and_workers_check_the_fingerprint(tmp_path):
    from keypoints.pipeline.engines.local import Extractor
    from keypoints.pipeline.settings import ExtractJob, ExtractSettings

    net = keypoints.load_model("aliked-t16", max_keypoints=10)
    settings = ExtractSettings.of(net, 320)
    other = ExtractSettings.of(keypoints.load_model("aliked-t16", max_keypoints=20), (240, 320))
    diff = settings.differences(other)
    assert any(d.startswith("fingerprint:") for d in diff)
    assert "option max_keypoints: 10 != 20" in diff and "resize: 320 != (240, 320)" in diff
    assert ExtractSettings.from_json(other.to_json()) == other
    assert ExtractSettings.from_json('{"model": "aliked-n16"}') is None  # an older layout
    job = ExtractJob(other, str(tmp_path), str(tmp_path / "parts"), None)
    with pytest.raises(keypoints.KeypointsError, match="not the one the run was started with"):
        Extractor(job, net)


@pytest.mark.slow
def test_two_runs_on_one_output_never_lose_data(tmp_path):
    """A second extract on the output of a running one refuses (exit 2, naming the first's
    PID) and the first finishes with every image; nothing of it is deleted."""
    root = _many_images(tmp_path, 60)
    output = tmp_path / "f.h5"
    first = _run(root, output)
    parts = tmp_path / "f.h5.parts"
    deadline = time.time() + 300
    while not list(parts.glob("shard-*.h5")) and first.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    assert first.poll() is None, "the first run ended before the second started"
    command = [sys.executable, "-m", "keypoints", "extract", str(root), "-o", str(output),
               "-m", "aliked-t16", "--resize", "320", "--max-keypoints", "200"]  # fmt: skip
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.poll() is None, "the first run ended before the second was refused"
    assert second.returncode == 2
    assert f"being written by another keypoints run (PID {first.pid}: keypoints extract" in (
        second.stderr
    )
    assert first.wait(timeout=600) == 0
    assert len(list_names(output)) == 60 and not parts.exists()


def test_orphaned_temporaries_are_removed_and_the_lock_is_released(image_dir, tmp_path):
    """The temporary of a merge killed half-way (atomic_write's ``.<name>.*.tmp``) is removed by
    the next run; the lock is free again after a run and after a failed one."""
    from keypoints.io.locks import BusyError, exclusive

    output = tmp_path / "f.h5"
    orphan = tmp_path / ".f.h5.k1ll3d.tmp"
    orphan.write_bytes(b"\0" * 4096)
    other = tmp_path / ".g.h5.abc.tmp"  # another output's: not ours to touch
    other.write_bytes(b"x")
    report = extract_report(image_dir, output, progress=False, **OPTIONS)
    assert report.extracted == 5 and not orphan.exists() and other.exists()
    with exclusive(output, "a test"):  # free again; and held here, a run is refused
        with pytest.raises(BusyError, match=rf"PID {os.getpid()}: a test"):
            extract_report(image_dir, output, progress=False, **OPTIONS)
    with pytest.raises(keypoints.ConfigError):
        extract_report(image_dir, output, progress=False, **{**OPTIONS, "max_keypoints": 50})
    with exclusive(output):
        pass


def test_unreadable_and_foreign_outputs(image_dir, tmp_path):
    """A corrupt output is replaced with --overwrite (as the message says); a features file
    without keypoints' settings record (hloc's) is refused, not adopted and restamped."""
    output = tmp_path / "f.h5"
    output.write_bytes(b"not hdf5 at all")
    with pytest.raises(keypoints.KeypointsError, match="not a readable HDF5 file.*--overwrite"):
        extract_report(image_dir, output, progress=False, **OPTIONS)
    report = extract_report(image_dir, output, progress=False, overwrite=True, **OPTIONS)
    assert report.extracted == 5 and len(list_names(output)) == 5

    foreign = tmp_path / "hloc.h5"
    with h5py.File(foreign, "w") as f:
        group = f.create_group("cats.png")
        group["keypoints"] = np.zeros((3, 2), np.float32)
    with pytest.raises(keypoints.ConfigError, match="not written by keypoints extract"):
        extract_report(image_dir, foreign, progress=False, **OPTIONS)
    with h5py.File(foreign, "r") as f:
        assert "keypoints_config" not in f.attrs  # untouched
    assert extract_report(image_dir, foreign, progress=False, overwrite=True, **OPTIONS).extracted


def test_non_utf8_file_names_are_reported_not_fatal(image_dir, tmp_path):
    """A file name that is not UTF-8 cannot be an HDF5 group: reported as a bad image, the
    others extracted; a rerun does the same and leaks no shard."""
    bad = os.path.join(os.fsencode(image_dir), b"caf\xe9.png")
    shutil.copy(EXAMPLE, bad)
    output = tmp_path / "f.h5"
    for _ in range(2):
        report = extract_report(image_dir, output, progress=False, **OPTIONS)
        assert [reason for _, reason in report.errors] == [
            "the file name is not valid UTF-8; rename the file"
        ]
        assert report.errors[0][0] == "caf\\udce9.png"
        assert len(list_names(output)) == 5 and not (tmp_path / "f.h5.parts").exists()


@pytest.mark.slow
def test_ray_cli_run_prints_only_our_lines(image_dir, tmp_path):
    """A successful `extract --engine ray` shows no Ray start-up, plan, or C++ notes (Ray's
    error-level note about actor arguments, ray-project/ray#53727); `-v` lets them through."""
    import subprocess
    import sys

    pytest.importorskip("ray", reason="Ray is not installed (pip install 'keypoints[ray]')")
    command = [sys.executable, "-m", "keypoints", "extract", str(image_dir), "-m", "aliked-t16",
               "--resize", "160", "--max-keypoints", "50", "--engine", "ray",
               "--workers", "2"]  # fmt: skip
    quiet = subprocess.run([*command, "-o", str(tmp_path / "a.h5")], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert "extracted 5 image(s)" in quiet.stdout
    lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert all(line.startswith("keypoints:") for line in lines), lines  # e.g. the bad image
    assert "core_worker" not in quiet.stderr and "WARNING" not in quiet.stderr
    loud = subprocess.run([*command, "-o", str(tmp_path / "b.h5"), "-v"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert loud.returncode == 0 and "core_worker" in loud.stderr
