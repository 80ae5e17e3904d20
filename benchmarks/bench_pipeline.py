"""Two images in, verified matches out: each pipeline against its reference implementation.

    python benchmarks/bench_pipeline.py [--runs 10] [--warmup 2] [--pairs graf,boat,wall]
                                        [--pipelines default,disk-lightglue,...] [--json]

One timed call is a whole pair, end to end: decode both files, detect and describe both images,
match, and fit a homography (the same estimator, :func:`keypoints.estimators.fit` with PoseLib at
2 px, on both sides, so the difference is detection and matching). The reference is what a user
of the field runs, loaded with the same released weights from ../shared/data:

- ``default``: keypoints' default (ALIKED-n16rot + LightGlue), in parity mode (fp32, LightGlue
  from cvg's fp32 release file rather than the bundled fp16 copy); reference kornia's ``ALIKED``
  + kornia's ``LightGlue`` (a copy of cvg's code), 2048 keypoints (top-k);
- ``disk-lightglue``: DISK (2048, top-k) + cvg's DISK LightGlue; reference kornia ``DISK`` +
  ``LightGlue``;
- ``xfeat-lighterglue``: XFeat (4096) + verlab's LighterGlue; reference kornia ``XFeat`` +
  ``LightGlue`` with LighterGlue's configuration;
- ``sift-mnn``: SIFT (2048) + mutual nearest neighbour; reference OpenCV's ``SIFT`` +
  ``BFMatcher(crossCheck=True)``.

Workloads: the Oxford pairs img1-img2 of graf, boat and wall, at native size (800x640 and
850x680) and at 1024 px on the longest side (both sides given that exact size). Every
(workload, pipeline, implementation) runs in its own subprocess, so each peak RSS is its own:
--warmup calls, then --runs timed calls; the table gives median and min ms per pair, the
reference's time over ours (by medians and by minima), matches and inliers per pair (so an
equal-speed shortcut with fewer matches shows), the share of our matches that are the
reference's (Jaccard of the match sets; keypoints are paired within 0.05 px), and peak RSS. The
CPU model and its AMX / avx512_bf16 / VNNI flags come first: the ratios depend on them.

Known difference (2026-12-01): kornia's ``ALIKED`` gives 82-86% of the keypoints of Shiaoming's
reference code on graf img1 (top 2048; ours agrees with the reference code to 1.2e-4 px, see
tests/test_aliked.py), so the ``default`` rows' match sets differ from kornia's by more than the
matcher; DISK, XFeat and their LightGlues agree exactly at native size. At 1024 px each side
resizes its own way (keypoints' resize against Pillow's bilinear), so the sets agree less (DISK
0.87 on graf). Run of 2026-12-01 (--runs 5, AMD EPYC, 2 threads, no AMX), speed-up by medians
at native size / 1024 px: default 2.11-2.33x / 2.26-2.62x, disk-lightglue 2.39-2.54x /
2.53-2.57x, xfeat-lighterglue 1.73-1.87x / 1.80-1.89x, sift-mnn 0.91-1.02x / 0.75-0.90x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from _common import DATA, cpu_info, print_table, run_child, time_calls

WEIGHTS = DATA / "weights"
OXFORD = DATA / "homography" / "oxford_affine"
PAIRS = {
    "graf": (OXFORD / "graf" / "img1.ppm", OXFORD / "graf" / "img2.ppm"),
    "boat": (OXFORD / "boat" / "img1.pgm", OXFORD / "boat" / "img2.pgm"),
    "wall": (OXFORD / "wall" / "img1.ppm", OXFORD / "wall" / "img2.ppm"),
}
SIZES = {"native": None, "1024 px": 1024}
#: the reference, keypoints in parity mode (fp32), keypoints in the fast mode (precision="fast":
#: bf16 for ALIKED, DISK, XFeat and LightGlue on a CPU with native bf16)
IMPLEMENTATIONS = ("reference", "keypoints", "keypoints fast")
#: name -> (our detector, its options, our matcher weights file or None)
PIPELINES = {
    "default": ("aliked-n16rot", {"max_keypoints": 2048, "threshold": 0.0},
                WEIGHTS / "lightglue" / "aliked_lightglue.pth"),
    "disk-lightglue": ("disk", {"max_keypoints": 2048},
                       WEIGHTS / "lightglue" / "disk_lightglue.pth"),
    "xfeat-lighterglue": ("xfeat", {"max_keypoints": 4096},
                          WEIGHTS / "xfeat" / "xfeat-lighterglue.pt"),
    "sift-mnn": ("sift", {"max_keypoints": 2048}, None),
}  # fmt: skip
LIGHTERGLUE = dict(input_dim=64, descriptor_dim=96, n_layers=6, num_heads=1,
                   depth_confidence=-1, width_confidence=0.95)  # fmt: skip


def exact_size(path, longest: int | None) -> tuple[int, int] | None:
    """(height, width) with the longest side ``longest`` (the image's aspect), or None."""
    if longest is None:
        return None
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    scale = longest / max(width, height)
    return round(height * scale), round(width * scale)


def fit_homography(points0: np.ndarray, points1: np.ndarray) -> int:
    """Inliers of the homography both sides fit (PoseLib, 2 px)."""
    from keypoints.estimators import fit

    _, inliers = fit(points0, points1, "homography", "poselib", 2.0)
    return int(inliers.sum())


# ours ------------------------------------------------------------------------------------------
def ours(pipeline: str, paths, size, precision: str = "fp32"):
    """A callable running our pipeline on the pair: ``-> (k0, k1, indices, inliers)``."""
    import keypoints
    from keypoints.matching import load_matcher

    model, options, weights = PIPELINES[pipeline]
    net = keypoints.load_model(model, precision=precision, **options)
    matcher = load_matcher(str(weights), precision=precision) if weights is not None else None
    method = "mnn" if matcher is None else "lightglue"
    extra = {"matcher": matcher, "precision": precision} if matcher else {}

    def run():
        f0, f1 = keypoints.detect([str(p) for p in paths], net, resize=size)
        matches = keypoints.match(f0, f1, method, **extra)
        idx = matches.indices.numpy()
        k0, k1 = f0.keypoints.numpy(), f1.keypoints.numpy()
        inliers = fit_homography(k0[idx[:, 0]], k1[idx[:, 1]])
        return k0, k1, idx, inliers

    return run


# the references --------------------------------------------------------------------------------
def decode(path, size) -> np.ndarray:
    """RGB float32 ``(H, W, 3)`` in [0, 1], resized (bilinear) to ``size`` when given."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if size is not None:
            rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.float32) / 255


def to_original(points: np.ndarray, path, size) -> np.ndarray:
    """Keypoints ``(N, 2)`` of the image resized to ``size`` -> pixels of the file's image.

    Pixel centres at integers, as keypoints reports them: ``x = (x' + 0.5) * W / W' - 0.5``.
    """
    if size is None or len(points) == 0:
        return points
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    scale = np.array([width / size[1], height / size[0]], dtype=np.float32)
    return (points + 0.5) * scale - 0.5


def kornia_lightglue(path, **conf):
    """kornia's copy of cvg's LightGlue holding a release file (cvg's loader renames)."""
    import re

    import torch
    from kornia.feature.lightglue import LightGlue

    state = torch.load(path, map_location="cpu", weights_only=True)
    if "matcher.posenc.Wr.weight" in state:
        state = {k[8:]: v for k, v in state.items() if k.startswith("matcher.")}
    state = {re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v
             for k, v in state.items() if not k.endswith(".r")}  # fmt: skip
    conf.setdefault("input_dim", state["input_proj.weight"].shape[1])
    model = LightGlue(features=None, flash=False, **conf)
    model.load_state_dict(state, strict=False)
    return model.eval()


def reference(pipeline: str, paths, size):
    """A callable running the reference implementation: ``-> (k0, k1, indices, inliers)``."""
    import torch

    if pipeline == "sift-mnn":
        import cv2

        sift = cv2.SIFT_create(nfeatures=2048)
        matcher = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True)

        def run_sift():
            found = []
            for path in paths:
                gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if size is not None:
                    gray = cv2.resize(gray, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                points, descriptors = sift.detectAndCompute(gray, None)
                found.append((np.float32([p.pt for p in points]), descriptors))
            pairs = matcher.match(found[0][1], found[1][1])
            idx = np.array([[m.queryIdx, m.trainIdx] for m in pairs]).reshape(-1, 2)
            k0, k1 = (to_original(found[i][0], paths[i], size) for i in (0, 1))
            return k0, k1, idx, fit_homography(k0[idx[:, 0]], k1[idx[:, 1]])

        return run_sift

    import kornia.feature as KF

    model, options, weights = PIPELINES[pipeline]
    if pipeline == "default":
        detector = KF.ALIKED(model, max_num_keypoints=2048, detection_threshold=0.0)
        state = torch.load(
            WEIGHTS / "aliked" / f"{model}.pth", map_location="cpu", weights_only=True
        )
        detector.load_state_dict(state, strict=False)  # its dkd.hw_grid buffer is derived
        matcher = kornia_lightglue(weights)
    elif pipeline == "disk-lightglue":
        detector = KF.DISK()
        state = torch.load(
            WEIGHTS / "disk" / "disk-depth-save.pth", map_location="cpu", weights_only=True
        )
        detector.load_state_dict(state["extractor"])
        matcher = kornia_lightglue(weights)
    else:
        detector = KF.XFeat(top_k=4096)
        detector.net.load_state_dict(
            torch.load(WEIGHTS / "xfeat" / "xfeat.pt", map_location="cpu", weights_only=True)
        )
        matcher = kornia_lightglue(weights, **LIGHTERGLUE)
    detector.eval()

    def describe(image: torch.Tensor):
        if pipeline == "default":
            out = detector(image)[0]
            return out.keypoints, out.descriptors
        if pipeline == "disk-lightglue":
            out = detector(image, n=2048, pad_if_not_divisible=True)[0]
            return out.keypoints, out.descriptors
        out = detector.detectAndCompute(image, top_k=4096)[0]
        return out["keypoints"], out["descriptors"]

    def run():
        with torch.inference_mode():
            data = {}
            for side, path in enumerate(paths):
                rgb = decode(path, size)
                image = torch.from_numpy(rgb).permute(2, 0, 1)[None]
                points, descriptors = describe(image)
                data[f"image{side}"] = {
                    "keypoints": points[None].float(),
                    "descriptors": descriptors[None],
                    "image_size": torch.tensor([[rgb.shape[1], rgb.shape[0]]], dtype=torch.float),
                }
            out = matcher(data)
        m0 = out["matches0"][0]
        valid = torch.nonzero(m0 > -1)[:, 0]
        idx = torch.stack([valid, m0[valid]], 1).numpy()
        k0, k1 = (to_original(data[f"image{i}"]["keypoints"][0].numpy(), paths[i], size)
                  for i in (0, 1))  # fmt: skip
        return k0, k1, idx, fit_homography(k0[idx[:, 0]], k1[idx[:, 1]])

    return run


# the driver ------------------------------------------------------------------------------------
def child(args) -> None:
    """Time one (pair, size, pipeline, implementation) and print its JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    paths = PAIRS[args.pair]
    size = exact_size(paths[0], SIZES[args.size])
    if args.impl == "reference":
        call = reference(args.pipeline, paths, size)
    else:  # "keypoints" (parity mode, fp32) or "keypoints fast"
        call = ours(args.pipeline, paths, size, "fast" if args.impl.endswith("fast") else "fp32")
    timed = time_calls(call, args.runs, args.warmup)
    k0, k1, idx, inliers = timed.pop("result")
    matches = [[k0[i].tolist(), k1[j].tolist()] for i, j in idx]
    print(json.dumps({**timed, "matches": len(idx), "inliers": inliers, "pairs": matches}))


def agreement(ours_pairs, reference_pairs, tolerance: float = 0.05) -> float:
    """Jaccard index of two match sets, matches given as keypoint coordinates."""
    if not ours_pairs and not reference_pairs:
        return 1.0
    ref = np.asarray(reference_pairs, dtype=np.float64).reshape(-1, 4)
    same = 0
    for pair in np.asarray(ours_pairs, dtype=np.float64).reshape(-1, 4):
        same += bool((np.abs(ref - pair).max(1) <= tolerance).any())
    return same / (len(ours_pairs) + len(reference_pairs) - same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pair", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows, results, summary = [], [], {}
    common = ["--runs", str(args.runs), "--warmup", str(args.warmup),
              "--threads", str(args.threads)]  # fmt: skip
    for size in args.sizes.split(","):
        for pair in args.pairs.split(","):
            for pipeline in args.pipelines.split(","):
                measured = {}
                for impl in IMPLEMENTATIONS:
                    measured[impl] = run_child(
                        __file__, ["--child", "--pair", pair, "--size", size,
                                   "--pipeline", pipeline, "--impl", impl, *common],
                    )  # fmt: skip
                ref = measured["reference"]
                for impl, own in measured.items():
                    same = agreement(own["pairs"], ref["pairs"])
                    speed = ref["median_ms"] / own["median_ms"]
                    summary.setdefault((pipeline, size, impl), []).append(speed)
                    rows.append([
                        size, pair, pipeline, impl,
                        f"{own['median_ms']:.0f}", f"{own['min_ms']:.0f}",
                        f"{speed:.2f}x", f"{ref['min_ms'] / own['min_ms']:.2f}x",
                        str(own["matches"]), str(own["inliers"]), f"{same:.3f}",
                        f"{own['peak_rss_mib']:.0f}",
                    ])  # fmt: skip
                results.append({"size": size, "pair": pair, "pipeline": pipeline,
                                **{k: {f: v for f, v in m.items() if f != "pairs"}
                                   for k, m in measured.items()}})  # fmt: skip
                print(f"done: {size} {pair} {pipeline}", file=sys.stderr)
    if args.json:
        print(json.dumps({"cpu": cpu_info(), "results": results}, indent=2))
        return
    print(cpu_info())
    print(f"{args.runs} timed runs after {args.warmup} warm-up, {args.threads} torch threads; "
          "ms per pair end to end (decode, detect both, match, fit H)\n")  # fmt: skip
    header = ["size", "pair", "pipeline", "implementation", "median ms", "min ms",
              "speed-up (median)", "speed-up (min)", "matches", "inliers",
              "same matches as reference", "peak RSS MiB"]  # fmt: skip
    print_table(header, rows)
    print("\nSpeed-up over the reference by medians, lowest-highest over the pairs:\n")
    sizes = args.sizes.split(",")
    table = []
    for pipeline in args.pipelines.split(","):
        for impl in IMPLEMENTATIONS[1:]:
            cells = []
            for size in sizes:
                values = summary.get((pipeline, size, impl), [])
                cells.append(f"{min(values):.2f}-{max(values):.2f}x" if values else "")
            table.append([pipeline, impl, *cells])
    print_table(["pipeline", "implementation", *sizes], table)


if __name__ == "__main__":
    main()
