"""Helpers shared by the benchmark scripts: one subprocess per configuration (so each peak RSS
is its own), timing with warm-up and per-stage breakdowns, the benchmark images, keypoint
agreement, and markdown tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: the benchmark images: the guide's cats, then real photos from ../shared/data when present
IMAGES = [
    ROOT / "examples" / "cats.png",
    DATA / "images" / "coco" / "000000004016.png",
    DATA / "images" / "superglue" / "phototourism" / "london_bridge_19481797_2295892421.jpg",
    DATA / "images" / "superglue" / "phototourism" / "piazza_san_marco_06795901_3725050516.jpg",
]
#: name -> ((height, width), batch size)
WORKLOADS = {
    "640x480 b1": ((480, 640), 1),
    "640x480 b4": ((480, 640), 4),
    "1024x768 b1": ((768, 1024), 1),
}
STAGES = ("preprocess", "network", "nms/keypoints", "descriptors", "post-process")


def load_images(size: tuple[int, int], count: int) -> list:
    """``count`` RGB PIL images resized to ``size`` = (height, width) (bilinear), so every
    configuration sees the same pixels and reports keypoints in the same frame."""
    from PIL import Image

    paths = [p for p in IMAGES if p.exists()]
    images = []
    for i in range(count):
        with Image.open(paths[i % len(paths)]) as image:
            rgb = image.convert("RGB")
        images.append(rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return images


class StageTimer:
    """Adds the wall time of wrapped callables to named stages (nested wrapped calls count
    once, in the outermost stage)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = defaultdict(float)
        self._active = False

    def wrap(self, owner: object, attr: str, stage: str) -> None:
        """Replace ``owner.attr`` (a function, method or module's ``forward``) by a timed one."""
        setattr(owner, attr, self.timed(getattr(owner, attr), stage))

    def timed(self, function: Callable, stage: str) -> Callable:
        """``function`` with its wall time added to ``stage``."""

        def timed(*args, **kwargs):
            if self._active:
                return function(*args, **kwargs)
            self._active = True
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.times[stage] += (time.perf_counter() - start) * 1000
                self._active = False

        return timed


def instrument_keypoints(model, timer: StageTimer) -> None:
    """Time the stages of our pipeline: preprocessing in ``detect``, the dense maps, NMS and
    keypoint selection (with sub-pixel refinement), descriptors, building the Features."""
    from keypoints import detection
    from keypoints.models import base, opencv, ops

    model = getattr(model, "core", model)  # the transformers facade runs its core's stages
    timer.wrap(model, "dense", "network")
    timer.wrap(model, "nms", "nms/keypoints")
    for name in ("select_keypoints", "soft_argmax_refine", "sample_map"):
        timer.wrap(ops, name, "nms/keypoints")  # sample_map inside a descriptor head: descriptors
    timer.wrap(ops, "sample_descriptors", "descriptors")
    if hasattr(model, "desc_head"):
        timer.wrap(model.desc_head, "forward", "descriptors")
    timer.wrap(detection, "to_array", "preprocess")
    timer.wrap(model, "prepare", "preprocess")
    for module in (base, opencv):  # Features in original-image pixels
        timer.wrap(module, "features_from_prepared", "post-process")


def time_calls(
    call: Callable[[], object], runs: int, warmup: int, timer: StageTimer | None = None
) -> dict:
    """Median and min ms of ``call`` over ``runs`` runs after ``warmup`` runs, the median ms
    of each of ``timer``'s stages (the rest of the time is ``other``), and this process's peak
    RSS in MiB. Returns also the last result under ``result``."""
    result = None
    for _ in range(warmup):
        result = call()
    times, stages = [], defaultdict(list)
    for _ in range(runs):
        if timer:
            timer.times.clear()
        start = time.perf_counter()
        result = call()
        total = (time.perf_counter() - start) * 1000
        times.append(total)
        if timer:
            for stage in STAGES:
                stages[stage].append(timer.times.get(stage, 0.0))
            stages["other"].append(total - sum(timer.times.values()))
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "stages_ms": {k: statistics.median(v) for k, v in stages.items()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "result": result,
    }


def agreement(keypoints, reference, tolerance: float = 0.5) -> float:
    """Fraction of ``reference`` keypoints ``(N, 2)`` with one of ``keypoints`` ``(M, 2)``
    within ``tolerance`` pixels (both in the same pixel frame); 1.0 when both are empty."""
    import torch

    if len(reference) == 0:
        return 1.0 if len(keypoints) == 0 else 0.0
    if len(keypoints) == 0:
        return 0.0
    distances = torch.cdist(reference.double(), keypoints.double())
    return float((distances.min(1).values <= tolerance).double().mean())


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


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB: VmHWM, which starts afresh at exec (``ru_maxrss`` keeps
    the RSS the forked parent had, here several hundred MiB of extraction)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report(rows: dict[tuple[str, str], dict], meta: dict, title: str, as_json: bool,
           with_diff: bool, descriptions: dict[str, str]) -> None:  # fmt: skip
    """Print the results as JSON, or as the title, the results and stage tables and the
    descriptions of the configurations that ran."""
    if as_json:
        results = [{"workload": w, "configuration": n, **r} for (w, n), r in rows.items()]
        print(json.dumps({"meta": {**meta, "cpu": cpu_info()}, "results": results}, indent=2))
        return
    print(cpu_info() + "\n")
    print(title + "\n")
    print_results_table(rows, with_diff)
    print("\nMedian ms per image in each stage:\n")
    print_stage_table(rows)
    ran = {name for _, name in rows}
    print("\n" + "\n".join(f"- {k}: {v}" for k, v in descriptions.items() if k in ran))


def print_results_table(rows: dict[tuple[str, str], dict], with_diff: bool) -> None:
    """Per (workload, configuration): median and min ms per image, the speed-ups against the
    reference (by medians and by minima), keypoint agreement, optionally the max abs diff,
    keypoints per image and peak RSS."""

    def fmt(value, spec: str, suffix: str = "") -> str:
        return "n/a" if value is None else f"{value:{spec}}{suffix}"

    header = ["workload", "configuration", "median ms", "min ms", "speed-up (median)",
              "speed-up (min)", "keypoint agreement", "keypoints", "peak RSS MiB"]  # fmt: skip
    if with_diff:
        header.insert(7, "max abs diff")
    table = []
    for (workload, name), row in rows.items():
        cells = [workload, name, fmt(row["median_ms"], ".0f"), fmt(row["min_ms"], ".0f"),
                 fmt(row["ratio"], ".2f", "x"), fmt(row["ratio_min"], ".2f", "x"),
                 fmt(row["agreement"], ".3f"), fmt(row["keypoints"], ".0f"),
                 fmt(row["peak_rss_mib"], ".0f")]  # fmt: skip
        if with_diff:
            cells.insert(7, fmt(row["max_abs_diff"], ".1e"))
        table.append(cells)
    print_table(header, table)


def print_stage_table(rows: dict[tuple[str, str], dict]) -> None:
    """Per (workload, configuration): median ms per stage per call."""
    print_table(
        ("workload", "configuration", *STAGES, "other"),
        [
            (workload, name, *(f"{row['stages_ms'].get(s, 0):.1f}" for s in (*STAGES, "other")))
            for (workload, name), row in rows.items()
        ],
    )


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
              "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")  # fmt: skip


def cpu_info() -> str:
    """The CPU model, the cores this process may use and the CPU's SIMD flags (Linux)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first CPU's
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "unknown"
    flags = set(fields.get("flags", "").split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    present = [f for f in SIMD_FLAGS if f in flags] or ["n/a"]

    def has(*names: str) -> str:
        return "yes" if any(n in flags for n in names) else "no"

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    hidden = f" (hidden from torch: ONEDNN_MAX_CPU_ISA={isa})" if isa else ""
    return (f"CPU: {model}; {usable} usable of {os.cpu_count()} logical CPUs\n"
            f"AMX: {has('amx_bf16', 'amx_int8', 'amx_tile')}{hidden}; "
            f"avx512_bf16: {has('avx512_bf16')}; VNNI: {has('avx512_vnni', 'avx_vnni')}\n"
            f"CPU flags (SIMD): {' '.join(present)}")  # fmt: skip
