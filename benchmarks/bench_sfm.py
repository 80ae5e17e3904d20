"""Scaling out: extraction images/s and matching pairs/s, local against Ray on 1 and 2 nodes,
the driver's peak memory, and exhaustive against retrieval pair counts.

    python benchmarks/bench_sfm.py [--images 216] [--match-pairs 200] [--json]

The images are random crops of the real images in ../shared/data (as bench_extract.py makes
them, 640x480 JPEG). Extraction: ALIKED-n16, 1024 keypoints at 640 px, every image. Pairs:
retrieval of the 5 most similar (VLAD, keypoints.pipeline.retrieval) against exhaustive.
Matching: the bundled ALIKED LightGlue on the first ``--match-pairs`` retrieval pairs. Each
configuration runs in its own process; its time counts everything from the call to the written
file (starting a local Ray instance or connecting to the cluster included) and its peak memory
is the driver's (VmHWM; Ray's actors are processes of their own). "ray, 2 nodes" is a head and a
second node started with `ray start` on this machine, one CPU each (tests/ray_cluster.py): on
one machine it shows the cost of the cluster's plumbing, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, cpu_info, peak_rss_mib, print_table, run_child
from bench_extract import make_images

MODEL, MAX_KEYPOINTS, RESIZE, K = "aliked-n16", 1024, 640, 5
ENGINES = {"local": {"engine": "local"}, "ray, 1 node": {"engine": "ray"},
           "ray, 2 nodes": {"engine": "ray"}}  # fmt: skip


def child(stage: str, engine: str, folder: str, features: str, output: str, address: str,
          match_pairs_count: int) -> dict:  # fmt: skip
    """In the child process: one stage on one engine; its rate and the driver's peak RSS."""
    from keypoints.pipeline import extract_report, match_pairs, read_pairs

    options = {**ENGINES[engine], "workers": 2, "progress": False}
    if address != "-":
        options["address"] = address
    start = time.perf_counter()
    if stage == "extract":
        report = extract_report(folder, output, MODEL, resize=RESIZE,
                                max_keypoints=MAX_KEYPOINTS, **options)  # fmt: skip
        assert not report.errors, report.errors
        count = report.extracted
    else:
        pairs = read_pairs(folder)[:match_pairs_count]
        _, count, _ = match_pairs(features, pairs, output, method="lightglue", batch_size=1,
                                  **options)  # fmt: skip
    seconds = time.perf_counter() - start
    return {"count": count, "seconds": seconds, "rate": count / seconds,
            "peak_rss_mib": peak_rss_mib()}  # fmt: skip


def pair_counts(features: Path, pairs_file: Path) -> dict:
    from keypoints.io.hloc import list_names
    from keypoints.pipeline import exhaustive_pairs, write_pairs
    from keypoints.pipeline.retrieval import retrieval_pairs

    names = list_names(features)
    start = time.perf_counter()
    pairs = retrieval_pairs(features, K)
    seconds = time.perf_counter() - start
    write_pairs(pairs, pairs_file)
    return {"images": len(names), "retrieval": len(pairs), "seconds": seconds,
            "exhaustive": len(exhaustive_pairs(names))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=216)
    parser.add_argument("--match-pairs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, engine, folder, features, output, address = args.child
        print(json.dumps(child(stage, engine, folder, features, output, address,
                               args.match_pairs)))  # fmt: skip
        return

    sys.path.insert(0, str(ROOT / "tests"))
    from ray_cluster import local_cluster

    rows: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "images"
        make_images(folder, args.images)
        common = ["--match-pairs", str(args.match_pairs), "--child"]

        def run(stage: str, engine: str, address: str = "-") -> None:
            tag = engine.replace(" ", "").replace(",", "-")
            features = tmp / "features-local.h5"
            source = str(folder) if stage == "extract" else str(tmp / "pairs.txt")
            output = tmp / f"{stage}-{tag}.h5"
            arguments = [*common, stage, engine, source, str(features), str(output), address]
            rows[stage, engine] = run_child(__file__, arguments)

        for stage in ("extract", "match"):
            run(stage, "local")
            if stage == "extract":  # the pairs of the local features, for every engine
                counts = pair_counts(tmp / "extract-local.h5", tmp / "pairs.txt")
                (tmp / "extract-local.h5").rename(tmp / "features-local.h5")
            run(stage, "ray, 1 node")
        with local_cluster(nodes=2) as cluster:
            import os

            os.environ.update(cluster.env)  # the children reach the cluster with its token
            for stage in ("extract", "match"):
                run(stage, "ray, 2 nodes", cluster.address)

    if args.json:
        results = [{"stage": s, "engine": e, **r} for (s, e), r in rows.items()]
        print(json.dumps({"pairs": counts, "results": results, "cpu": cpu_info()}, indent=2))
        return
    print(f"keypoints: {counts['images']} JPEG images 640x480, {MODEL} {MAX_KEYPOINTS} keypoints "
          f"at {RESIZE} px, the bundled ALIKED LightGlue\n")  # fmt: skip
    print(cpu_info() + "\n")
    print_table(
        ("stage", "engine", "items", "seconds", "items/s", "driver peak RSS MiB"),
        [
            (
                stage,
                engine,
                str(r["count"]),
                f"{r['seconds']:.1f}",
                f"{r['rate']:.2f}",
                f"{r['peak_rss_mib']:.0f}",
            )  # fmt: skip
            for (stage, engine), r in rows.items()
        ],
    )
    print()
    print_table(
        ("images", "exhaustive pairs", f"retrieval pairs (K={K})", "retrieval seconds"),
        [
            (
                str(counts["images"]),
                str(counts["exhaustive"]),
                str(counts["retrieval"]),
                f"{counts['seconds']:.1f}",
            )
        ],  # fmt: skip
    )


if __name__ == "__main__":
    main()
