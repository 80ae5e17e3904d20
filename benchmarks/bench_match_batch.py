"""LightGlue throughput on many pairs of cached features: pairs per second and peak memory.

    python benchmarks/bench_match_batch.py [--pairs 200] [--batch-sizes 1,4,16]
                                           [--precisions fp32,bf16] [--max-keypoints 1024]

What ``keypoints match-pairs`` does after extraction: the parent extracts ALIKED-n16rot
features (``--max-keypoints`` best, images resized to 1024 px) of the shared images once into
an hloc-layout HDF5 file with :func:`keypoints.extract`, and lists ``--pairs`` pairs of them
(all pairs of the first images, in order). Each (precision, batch size) then runs in its own
process (so its peak RSS is its own): it reads the features from the file, matches every pair
with :func:`keypoints.match_batch` (cvg's ALIKED LightGlue, bundled) once to warm up on the
first batch, then times one pass over all pairs. The table gives pairs per second, the time
per pair, the mean matches per pair, the share of pairs whose match set equals fp32 batch 1's
and the mean Jaccard index of the match sets (padding and batching must not change results;
bf16 changes a few matches), and peak RSS.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, cpu_info, print_table, run_child

IMAGE_FOLDERS = [
    DATA / "images" / "superglue" / "phototourism",
    DATA / "homography" / "oxford_affine",
    DATA / "images" / "icl_snippet",
    DATA / "images" / "coco",
]
SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".pgm"}


def images(count: int) -> list[Path]:
    """Up to ``count`` images of the shared data (sorted per folder)."""
    found = [p for folder in IMAGE_FOLDERS if folder.is_dir()
             for p in sorted(folder.rglob("*")) if p.suffix.lower() in SUFFIXES]  # fmt: skip
    return found[:count]


def pair_names(names: list[str], count: int) -> list[tuple[str, str]]:
    """The first ``count`` pairs of all pairs of ``names``."""
    return list(itertools.islice(itertools.combinations(names, 2), count))


def child(features: str, pairs_file: str, batch_size: int, precision: str, out: str) -> dict:
    import resource

    import numpy as np

    import keypoints
    from keypoints.io.hloc import read_features

    pairs = [tuple(line.split()) for line in Path(pairs_file).read_text().splitlines()]
    cache: dict[str, keypoints.Features] = {}

    def load(name: str) -> keypoints.Features:
        if name not in cache:
            cache[name] = read_features(features, name)
        return cache[name]

    loaded = [(load(a), load(b)) for a, b in pairs]
    keypoints.match_batch(loaded[:batch_size], "lightglue", batch_size=batch_size,
                          precision=precision)  # warm-up  # fmt: skip
    start = time.perf_counter()
    results = keypoints.match_batch(loaded, "lightglue", batch_size=batch_size,
                                    precision=precision)  # fmt: skip
    seconds = time.perf_counter() - start
    np.savez(out, *[m.indices.numpy() for m in results])
    return {
        "seconds": seconds,
        "pairs": len(pairs),
        "matches": float(np.mean([len(m) for m in results])),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def same_matches(a: str, b: str) -> tuple[float, float]:
    """Two saved runs: the share of pairs with equal match sets, and the mean Jaccard index."""
    import numpy as np

    equal, jaccard = [], []
    with np.load(a) as x, np.load(b) as y:
        for key in x.keys():
            s, t = {tuple(r) for r in x[key].tolist()}, {tuple(r) for r in y[key].tolist()}
            equal.append(s == t)
            jaccard.append(len(s & t) / len(s | t) if s | t else 1.0)
    return float(np.mean(equal)), float(np.mean(jaccard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--max-keypoints", type=int, default=1024)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        features, pairs_file, batch, precision, out = args.child
        print(json.dumps(child(features, pairs_file, int(batch), precision, out)))
        return

    import keypoints

    needed = next(n for n in itertools.count(2) if n * (n - 1) // 2 >= args.pairs)
    paths = images(needed)
    if len(paths) < needed:
        sys.exit(f"need {needed} images under ../shared/data for {args.pairs} pairs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i, path in enumerate(paths):  # one flat folder: short, unique names
            (folder / f"{i:03d}{path.suffix}").symlink_to(path.resolve())
        features = Path(tmp) / "features.h5"
        start = time.perf_counter()
        keypoints.extract(folder, features, "aliked-n16rot", max_keypoints=args.max_keypoints,
                          threshold=0.0, progress=False)  # fmt: skip
        extraction = time.perf_counter() - start
        names = sorted(p.name for p in folder.iterdir())
        pairs_file = Path(tmp) / "pairs.txt"
        pairs_file.write_text("\n".join(f"{a} {b}" for a, b in pair_names(names, args.pairs)))
        baseline = None
        for precision in args.precisions.split(","):
            for batch in args.batch_sizes.split(","):
                out = str(Path(tmp) / f"{precision}-{batch}.npz")
                r = run_child(__file__, ["--child", str(features), str(pairs_file), batch,
                                         precision, out])  # fmt: skip
                baseline = baseline or out
                equal, jaccard = same_matches(out, baseline)
                rows.append([
                    precision, batch, f"{r['pairs'] / r['seconds']:.2f}",
                    f"{1000 * r['seconds'] / r['pairs']:.0f}", f"{r['matches']:.0f}",
                    f"{equal:.3f}", f"{jaccard:.3f}", f"{r['peak_rss_mib']:.0f}",
                ])  # fmt: skip
                print(f"measured {precision} batch {batch}", file=sys.stderr)
    print(cpu_info())
    print(f"{args.pairs} pairs of {len(paths)} images (ALIKED-n16rot, {args.max_keypoints} "
          f"keypoints, 1024 px; extracted in {extraction:.0f} s), cvg's ALIKED LightGlue, "
          "one timed pass after a warm-up batch\n")  # fmt: skip
    print_table(["precision", "batch size", "pairs/s", "ms per pair", "matches per pair",
                 "pairs with fp32 batch 1's matches", "mean Jaccard to fp32 batch 1",
                 "peak RSS MiB"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
