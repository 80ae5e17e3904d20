"""Robust estimators: PoseLib beside OpenCV's USAC MAGSAC++ on real matches.

    python benchmarks/bench_estimators.py [--threads 2] [--repeats 3]

Homographies: the 15 pairs of the Oxford affine sequences in ../shared/data (graf, wall, boat;
img1 against img2..6, ground truth H1toNp). Features and matches are computed once per pipeline
(ALIKED-n16 top 2048 + LightGlue; SIFT top 2048 + mutual nearest neighbour), then every
estimator fits the same matches at thresholds 1, 2 and 3 px: H@1/H@3/H@5 (fraction of pairs with
a mean corner error of at most 1/3/5 px), AUC@5 and the median ms per fit (median of
``--repeats`` fits per pair, averaged over the pairs). "poselib" is :func:`keypoints.estimators.fit`
(PoseLib's default final refinement: Cauchy loss of scale threshold/2, up to 100 LM iterations);
"poselib (no final LM)" calls PoseLib with that refinement switched off, to show what it adds.

Fundamental matrices: the pairs of SuperGlue's sample pair lists (name0 name1 rot0 rot1 K0 K1
T_0to1 when the line has ground truth) whose images are in ../shared/data, with ALIKED-n16 +
LightGlue. F is fitted by each estimator, turned into E = K1^T F K0, and the pose recovered with
``cv2.recoverPose`` on normalised points: rotation and translation angular errors (degrees; the
translation's up to sign) per pair with ground truth; inlier counts and ms for every pair.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
from _common import DATA, cpu_info, print_table

os.environ.setdefault("HF_HUB_OFFLINE", "1")

THRESHOLDS = (1.0, 2.0, 3.0)
#: (label, estimator, final refinement); "poselib" without it is called directly
ESTIMATOR_CONFIGS = (("opencv", "opencv", True), ("poselib", "poselib", True),
                     ("poselib (no final LM)", "poselib", False))  # fmt: skip
OXFORD = DATA / "homography" / "oxford_affine"
LIGHTGLUE_WEIGHTS = DATA / "weights" / "lightglue" / "aliked_lightglue.pth"
SUPERGLUE = DATA / "images" / "superglue"
PAIR_LISTS = (("phototourism", "phototourism_sample_pairs.txt"),
              ("scannet", "scannet_sample_pairs_with_gt.txt"))  # fmt: skip


#: SIMD features that decide how fast the dense networks and the solvers run
def versions() -> str:
    import cv2
    import poselib
    import torch

    return (f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
            f" ({torch.get_num_threads()} threads), opencv {cv2.__version__} "
            f"({cv2.getNumThreads()} threads), poselib {poselib.__version__}")  # fmt: skip


def poselib_without_refinement(p0, p1, model: str, threshold: float):
    """PoseLib's RANSAC (with its local optimisation) but no final LM refinement: fit's output
    conventions (H[2, 2] = 1, F of unit norm; None and all False when nothing was found)."""
    import poselib

    from keypoints.defaults import GEOMETRIC_MODELS

    none = np.zeros(len(p0), dtype=bool)
    if len(p0) < GEOMETRIC_MODELS[model]:
        return None, none
    key = "max_reproj_error" if model == "homography" else "max_epipolar_error"
    ransac = {key: threshold, "success_prob": 0.9999, "max_iterations": 10000}
    solve = poselib.estimate_homography if model == "homography" else poselib.estimate_fundamental
    matrix, info = solve(p0, p1, ransac, {"max_iterations": 0})
    if info["num_inliers"] < GEOMETRIC_MODELS[model]:
        return None, none
    scale = matrix[2, 2] if model == "homography" else np.linalg.norm(matrix)
    return matrix / scale, np.asarray(info["inliers"], dtype=bool)


def timed_fit(p0, p1, model: str, config, threshold: float, repeats: int):
    """``(matrix, inliers, median ms)`` of ``repeats`` fits (the estimators are deterministic)."""
    from keypoints.estimators import fit

    _, estimator, refine = config
    times, result = [], (None, np.zeros(len(p0), dtype=bool))
    for _ in range(repeats):
        start = time.perf_counter()
        if refine:
            result = fit(p0, p1, model, estimator, threshold)
        else:
            result = poselib_without_refinement(p0, p1, model, threshold)
        times.append((time.perf_counter() - start) * 1000)
    return result[0], result[1], statistics.median(times)


def matched_points(f0, f1, m) -> tuple[np.ndarray, np.ndarray]:
    idx = m.indices.numpy()
    return (f0.keypoints.numpy()[idx[:, 0]].astype(np.float64),
            f1.keypoints.numpy()[idx[:, 1]].astype(np.float64))  # fmt: skip


def pipelines() -> dict:
    """name -> (detect(path) -> Features, match(f0, f1) -> Matches)."""
    import keypoints

    def aliked(path):
        return keypoints.detect(str(path), "aliked-n16", max_keypoints=2048, threshold=0.0)[0]

    def sift(path):
        return keypoints.detect(str(path), "sift", max_keypoints=2048)[0]

    def lightglue(f0, f1):
        return keypoints.match(f0, f1, "lightglue", matcher=str(LIGHTGLUE_WEIGHTS))

    def mnn(f0, f1):
        return keypoints.match(f0, f1, "mnn")

    return {"aliked-n16 + lightglue": (aliked, lightglue), "sift + mnn": (sift, mnn)}


def homography_pairs(detect, match) -> list[dict]:
    """Every Oxford pair's matched points, image 0 size and true homography (features once)."""
    from keypoints.evaluation.datasets import load_dataset

    pairs = []
    for sequence in load_dataset(OXFORD):
        f0 = detect(sequence.reference)
        for pair in sequence.pairs:
            f1 = detect(pair.path1)
            p0, p1 = matched_points(f0, f1, match(f0, f1))
            pairs.append({"name": f"{sequence.name} 1-{pair.index}", "p0": p0, "p1": p1,
                          "size0": f0.image_size, "truth": pair.homography})  # fmt: skip
    return pairs


def homography_benchmark(repeats: int) -> None:
    from keypoints.evaluation.metrics import corner_error, homography_accuracy, homography_auc

    for name, (detect, match) in pipelines().items():
        start = time.perf_counter()
        pairs = homography_pairs(detect, match)
        seconds = time.perf_counter() - start
        counts = [len(p["p0"]) for p in pairs]
        print(f"\n### Homography, {name}: {len(pairs)} Oxford pairs, {np.mean(counts):.0f} "
              f"matches per pair on average (min {min(counts)}; features and matches "
              f"{seconds:.0f} s, once)\n")  # fmt: skip
        rows, per_pair = [], {p["name"]: [] for p in pairs}
        columns = []
        for config in ESTIMATOR_CONFIGS:
            for threshold in THRESHOLDS:
                errors, inliers, ms = [], [], []
                for p in pairs:
                    matrix, mask, t = timed_fit(p["p0"], p["p1"], "homography", config,
                                                threshold, repeats)  # fmt: skip
                    errors.append(corner_error(matrix, p["truth"], p["size0"]))
                    inliers.append(mask.sum())
                    ms.append(t)
                    per_pair[p["name"]].append(errors[-1])
                accuracy = homography_accuracy(errors, (1, 3, 5))
                auc = homography_auc(errors, (5,))
                rows.append((config[0], f"{threshold:g}", f"{accuracy['1']:.3f}",
                             f"{accuracy['3']:.3f}", f"{accuracy['5']:.3f}", f"{auc['5']:.3f}",
                             f"{np.median(errors):.2f}", f"{np.mean(inliers):.0f}",
                             f"{np.mean(ms):.1f}"))  # fmt: skip
                columns.append(f"{config[0]} @{threshold:g}")
        print_table(("estimator", "threshold px", "H@1", "H@3", "H@5", "AUC@5",
                     "median corner err px", "mean inliers", "ms per fit"), rows)  # fmt: skip
        print(f"\nCorner error (px) per pair, {name}:\n")
        print_table(("pair", "matches", *columns),
                    [(pair, str(n), *(f"{e:.2f}" for e in errs))
                     for (pair, errs), n in zip(per_pair.items(), counts)])  # fmt: skip


def read_pairs() -> list[dict]:
    """The SuperGlue sample pairs whose two images exist, with K0, K1 and T_0to1 if listed."""
    pairs = []
    for folder, listing in PAIR_LISTS:
        path = SUPERGLUE / listing
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) < 2:
                continue
            paths = [SUPERGLUE / folder / fields[0], SUPERGLUE / folder / fields[1]]
            pair = {"name": f"{fields[0][:-4]} / {fields[1][:-4]}", "paths": paths,
                    "exists": all(p.is_file() for p in paths), "truth": None}  # fmt: skip
            if len(fields) == 38:
                values = np.array(fields[2:], dtype=np.float64)
                if values[0] or values[1]:
                    sys.exit(f"{listing}: rotated pairs (rot0/rot1 != 0) are not supported")
                pair["truth"] = (values[2:11].reshape(3, 3), values[11:20].reshape(3, 3),
                                 values[20:36].reshape(4, 4))  # fmt: skip
            pairs.append(pair)
    return pairs


def pose_errors(matrix, mask, p0, p1, truth) -> tuple[float, float]:
    """Rotation and translation angular errors (degrees) of the pose recovered from F."""
    import cv2

    if matrix is None:
        return float("inf"), float("inf")
    k0, k1, t_0to1 = truth
    essential = k1.T @ matrix @ k0

    def normalised(points, k):
        return (points - k[:2, 2]) / np.array([k[0, 0], k[1, 1]])

    n0, n1 = normalised(p0[mask], k0), normalised(p1[mask], k1)
    _, rotation, translation, _ = cv2.recoverPose(essential, n0, n1, np.eye(3))
    true_r, true_t = t_0to1[:3, :3], t_0to1[:3, 3]
    cos_r = np.clip((np.trace(true_r.T @ rotation) - 1) / 2, -1, 1)
    t = translation.ravel()
    cos_t = np.clip(t @ true_t / (np.linalg.norm(t) * np.linalg.norm(true_t)), -1, 1)
    error_t = np.degrees(np.arccos(cos_t))
    return float(np.degrees(np.arccos(cos_r))), float(min(error_t, 180 - error_t))


def fundamental_benchmark(repeats: int) -> None:
    detect, match = pipelines()["aliked-n16 + lightglue"]
    pairs = read_pairs()
    usable = [p for p in pairs if p["exists"]]
    missing = [p["name"] for p in pairs if not p["exists"]]
    print(f"\n### Fundamental matrix, aliked-n16 + lightglue: {len(usable)} pairs with both "
          f"images ({sum(p['truth'] is not None for p in usable)} with ground-truth pose); "
          f"skipped, images absent: {len(missing)}\n")  # fmt: skip
    rows, summary = [], {}
    for pair in usable:
        f0, f1 = detect(pair["paths"][0]), detect(pair["paths"][1])
        p0, p1 = matched_points(f0, f1, match(f0, f1))
        for config in ESTIMATOR_CONFIGS:
            for threshold in THRESHOLDS:
                matrix, mask, ms = timed_fit(p0, p1, "fundamental", config, threshold, repeats)
                errors = ("n/a", "n/a")
                if pair["truth"] is not None:
                    r, t = pose_errors(matrix, mask, p0, p1, pair["truth"])
                    summary.setdefault((config[0], threshold), []).append((r, t))
                    errors = (f"{r:.2f}", f"{t:.2f}")
                rows.append((pair["name"], str(len(p0)), config[0], f"{threshold:g}",
                             str(int(mask.sum())), *errors, f"{ms:.1f}"))  # fmt: skip
    print_table(("pair", "matches", "estimator", "threshold px", "inliers", "R err deg",
                 "t err deg", "ms per fit"), rows)  # fmt: skip
    if summary:
        print("\nPairs with ground truth, summary:\n")
        print_table(("estimator", "threshold px", "mean R err deg", "mean t err deg",
                     "max R err deg", "max t err deg"),
                    [(name, f"{thr:g}", *(f"{np.mean([e[i] for e in errs]):.2f}" for i in (0, 1)),
                      *(f"{np.max([e[i] for e in errs]):.2f}" for i in (0, 1)))
                     for (name, thr), errs in summary.items()])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--repeats", type=int, default=3, help="fits per pair and setting")
    parser.add_argument("--skip", choices=("homography", "fundamental"), default=None)
    args = parser.parse_args()
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(cpu_info())
    print(versions())
    print("\n## Robust estimators: PoseLib beside OpenCV USAC MAGSAC++ (confidence 0.9999, "
          "at most 10000 iterations)")  # fmt: skip
    if args.skip != "homography":
        homography_benchmark(args.repeats)
    if args.skip != "fundamental":
        fundamental_benchmark(args.repeats)


if __name__ == "__main__":
    main()
