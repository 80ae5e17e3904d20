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
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, require
from test_extract import assert_same_features, read_all

from keypoints.io.hloc import list_names, pair_name
from keypoints.pipeline import extract, match_pairs, sequential_pairs

pytestmark = pytest.mark.slow

#: Our processes carry this variable (the cluster's folder) in their environment.
MARKER = "KEYPOINTS_TEST_CLUSTER"


@dataclass
class Cluster:
    address: str
    folder: Path
    env: dict[str, str]  # for drivers: the cluster's token

    def processes(self) -> dict[int, str]:
        """PID -> command line (or Ray's process title) of every process of this cluster."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:  # gone, or not ours to read
                continue
            if f"{MARKER}={self.folder}".encode() in environ.split(b"\0"):
                found[int(entry.name)] = title.decode(errors="replace")
        return found

    def actors(self, name: str) -> list[int]:
        """The PIDs of the Ray actors running our class ``name`` (their title names it)."""
        return [pid for pid, title in self.processes().items()
                if title.startswith("ray::") and name in title]  # fmt: skip


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def start_node(folder: Path, env: dict, name: str, *options: str) -> subprocess.Popen:
    """`ray start --block` as a process of its own; returns once its node is up."""
    ray = str(Path(sys.executable).with_name("ray"))
    agent, grpc, runtime, metrics, manager, objects = free_ports(6)
    command = [ray, "start", "--block", "--num-cpus", "1", "--temp-dir", str(folder),
               "--node-ip-address", "127.0.0.1", "--object-store-memory", str(200 * 2**20),
               "--disable-usage-stats", "--dashboard-agent-listen-port", str(agent),
               "--dashboard-agent-grpc-port", str(grpc), "--runtime-env-agent-port", str(runtime),
               "--metrics-export-port", str(metrics), "--node-manager-port", str(manager),
               "--object-manager-port", str(objects), *options]  # fmt: skip
    log = folder / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while b"block forever" not in log.read_bytes():
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"ray start ({name}) failed:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    return process


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node, one CPU each; stopped (only they) however the tests end."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'keypoints[ray]')")
    # a short folder: Ray's socket paths live below it and must fit in 107 bytes
    folder = Path(tempfile.mkdtemp(prefix="kpray-", dir="/tmp"))
    token = secrets.token_hex(32)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | auth
    # the nodes stop at once on SIGTERM (no 30 s drain waiting for the workers to go idle)
    node_env = env | {MARKER: str(folder), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    nodes: list[subprocess.Popen] = []
    port, dashboard = free_ports(2)
    try:
        nodes.append(start_node(folder, node_env, "head", "--head",
                                "--port", str(port), "--include-dashboard", "false",
                                "--dashboard-port", str(dashboard)))  # fmt: skip
        nodes.append(start_node(folder, node_env, "node", "--address",
                                f"127.0.0.1:{port}"))  # fmt: skip
        yield Cluster(f"127.0.0.1:{port}", folder, env)
    finally:
        for node in reversed(nodes):  # `ray start --block` stops its node's processes
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
        leftover = Cluster("", folder, env).processes()
        for pid in leftover:  # anything still alive of this cluster, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


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
