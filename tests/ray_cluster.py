"""A real Ray cluster on this machine, for tests and benchmarks: `ray start` processes of their
own (one CPU each), with their own ports, temporary folder and authentication token, so nothing
touches another Ray instance on the machine; stopping it stops exactly its processes (they carry
a marker in their environment).
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

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


@contextmanager
def local_cluster(nodes: int = 2):
    """A head and ``nodes - 1`` more nodes, one CPU each; stopped (only they) however it ends.

    Yields a :class:`Cluster` whose ``address`` drivers pass as ``--address`` (with ``env``,
    which carries the cluster's token).
    """
    # a short folder: Ray's socket paths live below it and must fit in 107 bytes
    folder = Path(tempfile.mkdtemp(prefix="kpray-", dir="/tmp"))
    token = secrets.token_hex(32)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | auth
    # the nodes stop at once on SIGTERM (no 30 s drain waiting for the workers to go idle)
    node_env = env | {MARKER: str(folder), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    started: list[subprocess.Popen] = []
    port, dashboard = free_ports(2)
    try:
        started.append(start_node(folder, node_env, "head", "--head",
                                  "--port", str(port), "--include-dashboard", "false",
                                  "--dashboard-port", str(dashboard)))  # fmt: skip
        for index in range(1, nodes):
            started.append(start_node(folder, node_env, f"node{index}", "--address",
                                      f"127.0.0.1:{port}"))  # fmt: skip
        yield Cluster(f"127.0.0.1:{port}", folder, env)
    finally:
        for node in reversed(started):  # `ray start --block` stops its node's processes
            node.send_signal(signal.SIGTERM)
        for node in started:
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
