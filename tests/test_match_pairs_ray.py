"""match-pairs in blocks: the Ray engine gives the local engine's matches (LightGlue on the
bundled ALIKED weights, and mutual nearest neighbour) with the same provenance; an interrupted
run leaves its complete blocks as shards that the rerun reuses; the errors a user can cause."""

from __future__ import annotations

import importlib
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
from conftest import DATA, require

import keypoints
from keypoints.io.hloc import list_names, pair_name
from keypoints.pipeline import exhaustive_pairs, match_pairs
from keypoints.pipeline.engines.blocks import BlockMatcher


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """ALIKED-n16 features of eight real images: the first four of Oxford graf and wall."""
    tmp = tmp_path_factory.mktemp("match_ray")
    images = tmp / "images"
    images.mkdir()
    for sequence in ("graf", "wall"):
        folder = require(DATA / "homography" / "oxford_affine" / sequence)
        for source in sorted(folder.glob("img*"))[:4]:
            shutil.copy(source, images / f"{sequence}-{source.name}")
    return keypoints.extract(images, tmp / "features.h5", "aliked-n16", resize=320,
                             max_keypoints=256, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module; actors run torch on this process's threads."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'keypoints[ray]')")
    saved = os.environ.get("KEYPOINTS_RAY_THREADS")
    os.environ["KEYPOINTS_RAY_THREADS"] = str(torch.get_num_threads())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("KEYPOINTS_RAY_THREADS", None)
        else:
            os.environ["KEYPOINTS_RAY_THREADS"] = saved


def pair_keys(path) -> list[str]:
    with h5py.File(path, "r") as f:
        return sorted(f"{a}/{b}" for a in f for b in f[a])


def assert_same_matches(got, expected, keys: list[str]) -> None:
    """The same pairs, matcher record and provenance; equal match indices; scores equal to one
    float16 step (hloc's layout stores them as float16: LightGlue scores that differ by 1e-7 in
    float32, from sums run in another order, can round to neighbouring float16 values)."""
    assert pair_keys(got) == sorted(keys)
    with h5py.File(got, "r") as a, h5py.File(expected, "r") as b:
        assert a.attrs["keypoints_matches"] == b.attrs["keypoints_matches"]
        for key in keys:
            assert dict(a[key].attrs) == dict(b[key].attrs)  # name0/1, features0/1
            np.testing.assert_array_equal(a[key]["matches0"][()], b[key]["matches0"][()])
            scores = [f[key]["matching_scores0"][()].astype(np.float32) for f in (a, b)]
            np.testing.assert_allclose(*scores, atol=1e-5, rtol=2**-10)  # one float16 ulp


@pytest.mark.slow
@pytest.mark.parametrize(("method", "options"), [("auto", {}), ("mnn", {"ratio": 0.9})])
def test_ray_gives_the_local_matches(features, tmp_path, ray_instance, method, options):
    """Two actors, blocks of 5 pairs, LightGlue batches of 2: the local engine's matches."""
    pairs = exhaustive_pairs(list_names(features))
    run = {"method": method, "shard_size": 5, "batch_size": 2, "progress": False, **options}
    local = match_pairs(features, pairs, tmp_path / "local.h5", **run)
    ray = match_pairs(features, pairs, tmp_path / "ray.h5", engine="ray", workers=2, **run)
    assert local[1:] == ray[1:] == (28, 0)
    assert_same_matches(ray[0], local[0], [pair_name(a, b) for a, b in pairs])
    with h5py.File(ray[0], "r") as f:
        expected = "lightglue" if method == "auto" else "mnn"
        assert f'"method": "{expected}"' in f.attrs["keypoints_matches"]
        valid = f[pair_name(*pairs[0])]["matches0"][()] > -1
        assert valid.sum() > 20
    assert not (tmp_path / "ray.h5.parts").exists()


@pytest.mark.slow
def test_ray_rematches_stale_pairs_and_keeps_the_rules(features, tmp_path, ray_instance,
                                                       monkeypatch):  # fmt: skip
    """Features extracted again for one image: a rerun matches only its pairs again, the same
    on Ray as locally; other matcher settings are refused; a bad image's error reaches the
    caller as itself, the other blocks' shards kept for the rerun; a features file the actors
    cannot open is named with the node."""
    source = tmp_path / "features.h5"
    shutil.copy(features, source)
    names = list_names(source)
    pairs = exhaustive_pairs(names)
    outputs = {"local": tmp_path / "local.h5", "ray": tmp_path / "ray.h5"}
    for engine, output in outputs.items():
        assert match_pairs(source, pairs, output, engine=engine, shard_size=8,
                           progress=False)[1:] == (28, 0)  # fmt: skip
    with h5py.File(source, "r+") as f:  # a re-extraction of names[2]: other keypoints
        f[f"{names[2]}/keypoints"][0] += 0.5
    for engine, output in outputs.items():
        assert match_pairs(source, pairs, output, engine=engine, shard_size=2,
                           progress=False)[1:] == (7, 21)  # fmt: skip
    assert_same_matches(outputs["ray"], outputs["local"], [pair_name(a, b) for a, b in pairs])
    with pytest.raises(keypoints.ConfigError, match="was matched with"):
        match_pairs(source, pairs, outputs["ray"], method="mnn", engine="ray", progress=False)

    with h5py.File(source, "r+") as f:  # descriptors that do not fit the keypoints
        del f[f"{names[5]}/descriptors"]
        f[f"{names[5]}/descriptors"] = np.zeros((64, 3), np.float32)
    other = tmp_path / "bad.h5"
    with pytest.raises(keypoints.KeypointsError, match=f"features of '{names[5]}'") as local:
        match_pairs(source, pairs, other, method="mnn", shard_size=4, progress=False)
    shutil.rmtree(tmp_path / "bad.h5.parts")
    with pytest.raises(type(local.value), match=f"features of '{names[5]}'"):
        match_pairs(source, pairs, other, method="mnn", engine="ray", shard_size=4,
                    progress=False)  # fmt: skip
    assert not other.exists() and list((tmp_path / "bad.h5.parts").glob("shard-*.h5"))

    module = importlib.import_module("keypoints.pipeline.match_pairs")
    prepare = module._prepare_matcher

    def vanish(*args):  # the features are gone once the driver has read them
        source.unlink()
        return prepare(*args)

    monkeypatch.setattr(module, "_prepare_matcher", vanish)
    message = r"no such features file \(on the Ray node .*every node must"
    with pytest.raises(keypoints.ImageNotFoundError, match=message):
        match_pairs(source, pairs, tmp_path / "gone.h5", method="mnn", engine="ray",
                    progress=False)  # fmt: skip


def test_an_interrupted_run_resumes_from_its_shards(features, tmp_path, monkeypatch):
    """Blocks completed before an interruption stay as shards; the rerun matches only the
    rest and gives the uninterrupted result. Shards of other settings are refused, unless
    overwrite (then replaced)."""
    pairs = exhaustive_pairs(list_names(features))
    output = tmp_path / "m.h5"
    run = {"method": "mnn", "shard_size": 4, "progress": False}
    reference = match_pairs(features, pairs, tmp_path / "reference.h5", **run)[0]
    original = BlockMatcher.run

    def interrupt_after(count: int) -> None:
        blocks = []

        def run(self, block, done=None):
            if len(blocks) == count:
                raise KeyboardInterrupt
            blocks.append(block)
            return original(self, block, done)

        monkeypatch.setattr(BlockMatcher, "run", run)

    interrupt_after(3)
    with pytest.raises(KeyboardInterrupt):
        match_pairs(features, pairs, output, **run)
    monkeypatch.undo()
    assert not output.exists() and len(list((tmp_path / "m.h5.parts").glob("shard-*.h5"))) == 3
    with pytest.raises(keypoints.ConfigError, match="interrupted run's shard .* was matched with"):
        match_pairs(features, pairs, output, method="mnn", ratio=0.8, progress=False)
    assert match_pairs(features, pairs, output, **run)[1:] == (16, 12)
    assert not (tmp_path / "m.h5.parts").exists()
    assert_same_matches(output, reference, [pair_name(a, b) for a, b in pairs])

    interrupt_after(1)
    with pytest.raises(KeyboardInterrupt):
        match_pairs(features, pairs, tmp_path / "n.h5", **run)
    monkeypatch.undo()
    assert len(list((tmp_path / "n.h5.parts").glob("shard-*.h5"))) == 1
    assert match_pairs(features, pairs, tmp_path / "n.h5", method="mnn", ratio=0.8,
                       overwrite=True, shard_size=4, progress=False)[1:] == (28, 0)  # fmt: skip
    assert not (tmp_path / "n.h5.parts").exists()


@pytest.mark.slow
def test_sigkill_keeps_the_complete_blocks(features, tmp_path):
    """`keypoints match-pairs` killed (SIGKILL) after a few blocks: the rerun skips them."""
    output = tmp_path / "m.h5"
    command = [sys.executable, "-m", "keypoints", "match-pairs", str(features), "--exhaustive",
               "-o", str(output), "--shard-size", "2", "--batch-size", "2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "m.h5.parts"
    deadline = time.time() + 300
    while process.poll() is None and len(list(parts.glob("shard-*.h5"))) < 3:
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    kept = len(list(parts.glob("shard-*.h5")))
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"matched {28 - 2 * kept} pair(s), skipped {2 * kept}" in rerun.stdout
    pairs = exhaustive_pairs(list_names(features))
    reference = match_pairs(features, pairs, tmp_path / "reference.h5", shard_size=2,
                            batch_size=2, progress=False)[0]  # fmt: skip
    assert_same_matches(output, reference, [pair_name(a, b) for a, b in pairs])


def test_engine_errors(features, tmp_path, monkeypatch):
    """An unknown engine is refused with a suggestion; without Ray, one line says what to
    install (API and CLI, exit 2)."""
    pairs = exhaustive_pairs(list_names(features))[:2]
    with pytest.raises(keypoints.ConfigError, match="unknown engine 'rya' \\(did you mean 'ray'"):
        match_pairs(features, pairs, tmp_path / "m.h5", engine="rya")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(keypoints.ConfigError, match=r"needs Ray: pip install 'keypoints\[ray\]'"):
        match_pairs(features, pairs, tmp_path / "m.h5", method="mnn", engine="ray",
                    progress=False)  # fmt: skip
    assert not (tmp_path / "m.h5").exists()
    from keypoints.cli import main

    args = ["match-pairs", str(features), "--exhaustive", "-o", str(tmp_path / "m.h5")]
    assert main([*args, "--engine", "rya"]) == 2
    assert main([*args, "--matcher", "mnn", "--engine", "ray"]) == 2
