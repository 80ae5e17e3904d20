"""Helpers shared by the benchmark scripts: one subprocess per configuration (so each peak RSS
is its own), timing with warm-up, and markdown tables."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence


def time_calls(call: Callable[[], object], runs: int, warmup: int) -> dict:
    """Median and min ms of ``call`` over ``runs`` runs after ``warmup`` runs, and this
    process's peak RSS in MiB. Returns also the last result under ``result``."""
    result = None
    for _ in range(warmup):
        result = call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - start) * 1000)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "result": result,
    }


def run_child(script: str, args: Sequence[str]) -> dict:
    """Run ``script --child ARGS...`` in a fresh interpreter (offline), return its last stdout
    line parsed as JSON; exit with its stderr when it fails."""
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
