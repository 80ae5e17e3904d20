"""A real two-node Ray cluster on this machine: `keypoints extract` and `keypoints match-pairs`
with --address, one actor's process killed (SIGKILL) during each run, and the outputs equal the
local engine's with nothing lost.

The head and the second node are `ray start ... --block` processes of their own (one CPU each),
with their own ports, temporary folder and authentication token, so nothing here touches another
Ray instance on the machine: the teardown stops exactly the processes of this cluster (they carry
a marker in their environment), even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, require
from ray_cluster import Cluster, local_cluster
from test_extract import assert_same_features, read_all

from keypoints.io.hloc import list_names, pair_name
from keypoints.pipeline import extract, match_pairs, sequential_pairs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node, one CPU each; stopped (only they) however the tests end."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'keypoints[ray]')")
    with local_cluster(nodes=2) as running:
        yield running


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Twelve real images: the Oxford graf and wall sequences."""
    root = tmp_path_factory.mktemp("cluster") / "images"
    root.mkdir()
    for sequence in ("graf", "wall"):
        for path in sorted(require(DATA / "homography" / "oxford_affine" / sequence).glob("img*")):
            shutil.copy(path, root / f"{sequence}-{path.name}")
    return root


def run_and_kill_an_actor(cluster: Cluster, command: list[str], actor: str, parts: Path,
                          env: dict) -> tuple[int, str]:  # fmt: skip
    """Run ``command`` against the cluster; SIGKILL one process running ``actor`` once the run
    has written its first shard. Returns the PID killed and the command's output."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)  # fmt: skip
    killed = 0
    try:
        deadline = time.time() + 300
        while not killed and process.poll() is None:
            assert time.time() < deadline, "no actor showed up"
            running = cluster.actors(actor)
            if running and parts.is_dir() and list(parts.glob("shard-*.h5")):
                os.kill(running[0], signal.SIGKILL)
                killed = running[0]
            time.sleep(0.05)
        output = process.communicate(timeout=600)[0].decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert killed, f"the run ended before an actor could be killed:\n{output}"
    assert process.returncode == 0, output
    return killed, output


def test_extract_and_match_pairs_on_two_nodes_survive_a_killed_worker(cluster, images, tmp_path):
    keypoints_cli = [sys.executable, "-m", "keypoints"]
    env = cluster.env | {"KEYPOINTS_RAY_THREADS": str(torch.get_num_threads())}
    settings = {"resize": 320, "max_keypoints": 256}

    # extraction: 12 blocks of one image over two actors, one per node
    features = tmp_path / "features.h5"
    command = [*keypoints_cli, "extract", str(images), "-o", str(features), "-m", "aliked-n16",
               "--resize", "320", "--max-keypoints", "256", "--engine", "ray", "--address",
               cluster.address, "--workers", "2", "--shard-size", "1"]  # fmt: skip
    killed, output = run_and_kill_an_actor(cluster, command, "_RayExtractor",
                                           tmp_path / "features.h5.parts", env)  # fmt: skip
    assert "extracted 12 image(s)" in output and "0 bad" in output
    assert not (tmp_path / "features.h5.parts").exists()
    assert killed not in cluster.processes()
    local = extract(images, tmp_path / "local.h5", "aliked-n16", progress=False, **settings)
    assert_same_features(read_all(features), read_all(local))

    # matching: 10 blocks of 4 pairs; the reference matches the same features in this process
    names = list_names(features)
    pairs = sequential_pairs(names, 4)
    command = [*keypoints_cli, "match-pairs", str(features), "--sequential", "4", "-o",
               str(tmp_path / "matches.h5"), "--engine", "ray", "--address", cluster.address,
               "--workers", "2", "--shard-size", "4"]  # fmt: skip
    run_and_kill_an_actor(cluster, command, "_RayMatcher", tmp_path / "matches.h5.parts", env)
    assert not (tmp_path / "matches.h5.parts").exists()
    reference = match_pairs(features, pairs, tmp_path / "reference.h5", progress=False,
                            shard_size=4)[0]  # fmt: skip
    assert_same_matches(tmp_path / "matches.h5", reference, [pair_name(a, b) for a, b in pairs])


def assert_same_matches(got: Path, expected: Path, keys: list[str]) -> None:
    import h5py

    with h5py.File(got, "r") as a, h5py.File(expected, "r") as b:
        assert a.attrs["keypoints_matches"] == b.attrs["keypoints_matches"]
        found = sorted(f"{x}/{y}" for x in a for y in a[x])
        assert found == sorted(keys)
        for key in keys:
            assert dict(a[key].attrs) == dict(b[key].attrs)
            np.testing.assert_array_equal(a[key]["matches0"][()], b[key]["matches0"][()])
            np.testing.assert_allclose(a[key]["matching_scores0"][()].astype(np.float32),
                                       b[key]["matching_scores0"][()].astype(np.float32),
                                       atol=1e-5, rtol=0)  # fmt: skip
