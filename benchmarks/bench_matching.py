"""Mutual-nearest-neighbour matching: time and peak memory against keypoint count.

    python benchmarks/bench_matching.py [--sizes 2048,8192,16384] [--dim 128]

Random float descriptors (L2) and random ORB-like binary descriptors (Hamming); each size in its
own process so the peak RSS column is that run's. The reference is one unblocked distance
matrix (what a naive ``torch.cdist`` + argmin costs in memory), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys

from _common import cpu_info, print_table, run_child, time_calls


def child(n: int, dim: int, mode: str) -> dict:
    import torch

    import keypoints
    from keypoints.matching import match

    torch.manual_seed(0)
    if mode == "hamming":
        d0 = torch.randint(0, 256, (n, 32), dtype=torch.uint8)
        d1 = torch.randint(0, 256, (n, 32), dtype=torch.uint8)
    else:
        d0, d1 = torch.randn(n, dim), torch.randn(n, dim)
    f0 = keypoints.Features(torch.zeros(n, 2), torch.ones(n), d0, (1, 1), binary=mode == "hamming")
    f1 = keypoints.Features(torch.zeros(n, 2), torch.ones(n), d1, (1, 1), binary=mode == "hamming")
    if mode == "unblocked":
        call = lambda: torch.cdist(d0, d1).argmin(1)  # noqa: E731
    else:
        call = lambda: match(f0, f1)  # noqa: E731
    t = time_calls(call, runs=3, warmup=1)
    return {"median_ms": t["median_ms"], "peak_rss_mib": t["peak_rss_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,8192,16384")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, dim, mode = args.child
        print(json.dumps(child(int(n), int(dim), mode)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        for mode in ("l2", "hamming", "unblocked"):
            r = run_child(__file__, ["--child", str(n), str(args.dim), mode])
            label = {"l2": "match (L2, blocked)", "hamming": "match (Hamming, ORB)",
                     "unblocked": "cdist + argmin (one block)"}[mode]  # fmt: skip
            rows.append((f"{n} x {n}", label, f"{r['median_ms']:.0f}", f"{r['peak_rss_mib']:.0f}"))
            print(f"measured {n} {mode}", file=sys.stderr)
    print(f"descriptor dim {args.dim} (binary: 256 bits), median of 3 runs after 1 warm-up\n")
    print(cpu_info() + "\n")
    print_table(("keypoints", "method", "ms", "peak RSS MiB"), rows)


if __name__ == "__main__":
    main()
