"""When LightGlue's keypoint pruning (adaptive width) pays on this CPU.

    python benchmarks/bench_pruning.py [--runs 5] [--keypoints 256,512,1024,2048]

cvg's LightGlue prunes keypoints that are confidently unmatchable after each layer only when
both images have more keypoints than a per-device threshold (``pruning_keypoint_thresholds``:
-1 on CPU, i.e. always; 1024 on CUDA; 1536 with flash attention), because packing the survivors
costs time of its own. We follow cvg on CPU (always prune). This measures the trade here: cvg's
ALIKED LightGlue (bundled) on ALIKED-n16rot features of the Oxford pairs graf 1-2 (easy) and
graf 1-4 (hard), at several keypoint counts, with pruning (``width_confidence=0.99``, the
release's default) and without (``width_confidence=-1``); adaptive depth stays on. ms per pair
(median of --runs after one warm-up), matches, and the Jaccard index of the match sets with and
without pruning.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import DATA, cpu_info, print_table

GRAF = DATA / "homography" / "oxford_affine" / "graf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keypoints", default="256,512,1024,2048")
    args = parser.parse_args()

    import keypoints

    rows = []
    for other in ("img2.ppm", "img4.ppm"):
        paths = [str(GRAF / "img1.ppm"), str(GRAF / other)]
        for count in (int(k) for k in args.keypoints.split(",")):
            net = keypoints.load_model("aliked-n16rot", max_keypoints=count, threshold=0.0)
            f0, f1 = keypoints.detect(paths, net)
            found = {}
            for label, width in (("pruning", 0.99), ("no pruning", -1.0)):

                def call(width=width, f0=f0, f1=f1):
                    return keypoints.match(f0, f1, "lightglue", width_confidence=width)

                call()
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    result = call()
                    times.append((time.perf_counter() - start) * 1000)
                found[label] = (statistics.median(times), result)
            (pruned, a), (full, b) = found["pruning"], found["no pruning"]
            sa, sb = {tuple(r) for r in a.indices.tolist()}, {tuple(r) for r in b.indices.tolist()}
            rows.append([
                f"graf 1-{other[3]}", str(count), f"{pruned:.0f}", f"{full:.0f}",
                f"{full / pruned:.2f}x", str(len(a)),
                f"{len(sa & sb) / max(len(sa | sb), 1):.3f}",
            ])  # fmt: skip
    print(cpu_info() + "\n")
    print_table(["pair", "keypoints", "pruning ms", "no pruning ms", "pruning speed-up",
                 "matches (pruning)", "Jaccard"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
