"""Retrieval pairs: recall@K of same-scene images on a folder mixing the shared data's scenes,
the pairs against exhaustive, time and peak memory; and time and memory on large synthetic
collections.

    python benchmarks/bench_retrieval.py [--model aliked-n16] [--resize 640]
        [--max-keypoints 1024] [--codebook-size 64] [--scale 1000 4000] [--json]

The folder: the Oxford affine sequences boat, graf and wall (img1..6, one scene each), the ICL
frames (one scene), the phototourism images (scene: the name before the numeric ids), the
ScanNet frames (scene: the sceneXXXX_XX prefix) and the COCO images (each its own scene), from
../shared/data. Recall@K: for each query image with at least one other image of its scene, the
fraction of those found among its K nearest (at most K can be), averaged over the queries; hit
rate: the fraction of queries with at least one of them in the K nearest
(``keypoints.pipeline.retrieval.recall_at_k``). Retrieval runs in its own process, so its peak
RSS is its own (the Python interpreter with torch imported included). ``--scale N``: a features
file of N synthetic images (1024 random 128-d descriptors each, float16) to time retrieval at
that size.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from _common import DATA, cpu_info, peak_rss_mib, print_table, run_child

KS = (1, 3, 5)


def mixed_folder(folder: Path) -> dict[str, str]:
    """Copy the shared data's scenes into ``folder`` (flat); returns name -> scene."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes = {}

    def add(path: Path, prefix: str, scene: str) -> None:
        name = f"{prefix}-{path.name}"
        shutil.copy(path, folder / name)
        scenes[name] = scene

    for sequence in ("boat", "graf", "wall"):
        for path in sorted((DATA / "homography" / "oxford_affine" / sequence).glob("img[1-6].*")):
            add(path, f"oxford-{sequence}", f"oxford-{sequence}")
    for path in sorted((DATA / "images" / "icl_snippet").glob("*.png")):
        add(path, "icl", "icl")
    for path in sorted((DATA / "images" / "superglue" / "phototourism").glob("*.jpg")):
        add(path, "phototourism", re.sub(r"(_\d+)+$", "", path.stem))
    for path in sorted((DATA / "images" / "superglue" / "scannet").glob("*.jpg")):
        add(path, "scannet", path.name[:12])  # sceneXXXX_XX
    for path in sorted((DATA / "images" / "coco").glob("*.png")):
        add(path, "coco", f"coco-{path.stem}")
    return scenes


def synthetic_features(path: Path, images: int, keypoints: int = 1024, dim: int = 128) -> None:
    """A features file of ``images`` images with random unit descriptors (float16)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for i in range(images):
            group = f.create_group(f"{i:06d}.jpg")
            d = rng.standard_normal((dim, keypoints)).astype(np.float32)
            d /= np.linalg.norm(d, axis=0, keepdims=True)
            group["descriptors"] = d.astype(np.float16)
            group["keypoints"] = rng.uniform(0, 640, (keypoints, 2)).astype(np.float32)
            group["scores"] = np.ones(keypoints, np.float32)
            group["image_size"] = np.array([640, 480])


def run_retrieval(features: str, k: int, codebook_size: int) -> dict:
    """In the child process: the ranking, the pairs, the seconds and the peak RSS."""
    from keypoints.pipeline.retrieval import nearest_images

    before = peak_rss_mib()  # the interpreter with keypoints (and torch) imported
    start = time.perf_counter()
    ranking = nearest_images(features, k, codebook_size=codebook_size)
    seconds = time.perf_counter() - start
    return {
        "ranking": ranking,
        "seconds": seconds,
        "import_rss_mib": before,
        "peak_rss_mib": peak_rss_mib(),
    }


def pairs_of(ranking: dict[str, list[str]], k: int) -> int:
    """The number of unordered pairs of each image with its first ``k`` neighbours."""
    return len({tuple(sorted((a, b))) for a, ns in ranking.items() for b in ns[:k]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="aliked-n16")
    parser.add_argument("--resize", type=int, default=640)
    parser.add_argument("--max-keypoints", type=int, default=1024)
    parser.add_argument("--codebook-size", type=int, default=64)
    parser.add_argument("--scale", type=int, nargs="*", default=[1000])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        features, k, codebook_size = args.child
        print(json.dumps(run_retrieval(features, int(k), int(codebook_size))))
        return

    import keypoints
    from keypoints.pipeline.retrieval import recall_at_k

    with tempfile.TemporaryDirectory() as tmp:
        scenes = mixed_folder(Path(tmp) / "images")
        start = time.perf_counter()
        features = keypoints.extract(Path(tmp) / "images", Path(tmp) / "features.h5",
                                     args.model, resize=args.resize,
                                     max_keypoints=args.max_keypoints, progress=False)  # fmt: skip
        extract_seconds = time.perf_counter() - start
        child = run_child(__file__, ["--child", str(features), str(max(KS)),
                                     str(args.codebook_size)])  # fmt: skip
        scaled = {}
        for images in args.scale:
            path = Path(tmp) / f"synthetic-{images}.h5"
            synthetic_features(path, images)
            run = run_child(__file__, ["--child", str(path), "5", str(args.codebook_size)])
            scaled[images] = {k: v for k, v in run.items() if k != "ranking"}
            path.unlink()
    ranking = child["ranking"]
    n = len(ranking)
    rows = []
    for k in KS:
        measured = recall_at_k(ranking, scenes, k)
        rows.append({"k": k, "recall": measured.recall, "hit_rate": measured.hit_rate,
                     "queries": measured.queries, "pairs": pairs_of(ranking, k),
                     "exhaustive": n * (n - 1) // 2})  # fmt: skip
    settings = (f"{n} images, {len(set(scenes.values()))} scenes; {args.model}, "
                f"resize={args.resize}, max_keypoints={args.max_keypoints}; VLAD, "
                f"codebook_size={args.codebook_size}, sample=100000, seed=0")  # fmt: skip
    if args.json:
        result = {"settings": settings, "cpu": cpu_info(), "extract_seconds": extract_seconds,
                  "retrieval_seconds": child["seconds"], "peak_rss_mib": child["peak_rss_mib"],
                  "recall": rows, "scale": scaled}  # fmt: skip
        print(json.dumps(result, indent=2))
        return
    print(cpu_info() + "\n")
    print(f"keypoints retrieval pairs: {settings}\n")
    print_table(
        ("K", "recall@K", "hit rate@K", "queries", "pairs (retrieval K)", "pairs (exhaustive)"),
        [(str(r["k"]), f"{r['recall']:.3f}", f"{r['hit_rate']:.3f}", str(r["queries"]),
          str(r["pairs"]), str(r["exhaustive"])) for r in rows],
    )  # fmt: skip
    print(f"\nextraction {extract_seconds:.1f} s; retrieval (codebook, VLAD, K=5 neighbours) "
          f"{child['seconds']:.2f} s, peak RSS {child['peak_rss_mib']:.0f} MiB "
          f"({child['import_rss_mib']:.0f} MiB after importing keypoints)\n")  # fmt: skip
    if scaled:
        print("Synthetic collections (1024 random 128-d descriptors per image, K=5):\n")
        print_table(
            ("images", "retrieval s", "peak RSS MiB", "after import MiB", "VLADs MiB"),
            [(str(i), f"{r['seconds']:.1f}", f"{r['peak_rss_mib']:.0f}",
              f"{r['import_rss_mib']:.0f}", f"{i * args.codebook_size * 128 * 4 / 2**20:.0f}")
             for i, r in scaled.items()],
        )  # fmt: skip


if __name__ == "__main__":
    main()
