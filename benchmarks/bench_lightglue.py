"""LightGlue matcher: transformers' LightGlueForKeypointMatching vs keypoints' LightGlueMatcher,
same weights, same keypoints and descriptors, same machine (CPU).

Only the matcher is timed: transformers' ``_match_image_pair`` against our
``LightGlueMatcher.forward``, on 1024 + 1024 keypoints per pair (Oxford graf 1-2 for batch 1;
graf 1-2 and 1-3 for batch 2). Each (case, batch, implementation) runs in its own subprocess (so
peak RSS is its own) with the same torch thread count: warm-up calls, then --runs timed calls.
The default thread count is torch's default (the physical cores) minus one: on a shared machine
a torch thread preempted by another process stalls the others, and calls then take several times
their normal time (seen here: 2 threads on 2 busy cores, 8x). The table gives median and min ms
per pair, transformers' time over ours (by medians and by minima), matches per pair, the mean
number of layers each keypoint went through (the ``prune`` output), the fraction of keypoints
whose match equals transformers' (and the largest score difference), and peak RSS. Ours runs
twice: fp32, and ``precision="bf16"`` (the transformer layers under bfloat16 autocast).

    python benchmarks/bench_lightglue.py [--runs 10] [--warmup 2] [--threads N] [--json]

Weights are RANDOM (the released LightGlue weights cannot be downloaded here), built as in
tests/test_lightglue.py: transformers' random initialisation (seed 0), with the final
projections of the assignment heads set to 8 x identity so that similar descriptors match and
matches are many. Random heads are never confident, so three cases:

- adaptive off: depth_confidence = width_confidence = 0 (all 9 layers, no pruning);
- adaptive on, nothing triggers: 0.95 / 0.99, unbiased heads (the adaptive checks run every
  layer but no pair stops early and no keypoint is pruned);
- adaptive on, early stops and pruning: 0.95 / 0.99 with the token-confidence bias set to 3.0
  (keypoints look confident, so pairs stop early) and the matchability bias to -2.0 (keypoints
  look unmatchable, so those not confident would be pruned). With these random weights every
  pair already stops after the first layer (mean layers per keypoint 1.00), before any pruning:
  the case measures the early-exit path;
- adaptive on, pruning only: token-confidence weights N(0, 0.05) and bias 1.0 (confidence
  varies per keypoint: some are confident, too few for an early stop) and matchability bias
  -6.0 (the confident ones are pruned): up to 9 layers on fewer and fewer keypoints.

Timing depends on the weights' values only through these adaptive decisions. Keypoints come
from keypoints.detect at 480x640 with a SuperPoint whose encoder and descriptor head are the
released ones from ../shared/data (the detector head is random, sharpened as
tests/conftest.py's random_superpoint does; all random when the file is absent), threshold 0
and max_keypoints 1024, so every image gives exactly 1024 keypoints.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import tempfile
import warnings
from pathlib import Path

from _common import DATA, cpu_info, print_table, run_child, time_calls

GRAF = DATA / "homography" / "oxford_affine" / "graf"
PARTIAL = DATA / "weights/superpoint_partial/superpoint_v1_encoder_descriptor.safetensors"
HEIGHT, WIDTH = 480, 640
NUM_KEYPOINTS = 1024
#: name -> (depth_confidence, width_confidence, token-confidence bias, matchability bias,
#: token-confidence weight std: 0 keeps transformers' initialisation)
CASES = {
    "adaptive off": (0.0, 0.0, 0.0, 0.0, 0.0),
    "adaptive on, nothing triggers": (0.95, 0.99, 0.0, 0.0, 0.0),
    "adaptive on, early stops and pruning": (0.95, 0.99, 3.0, -2.0, 0.0),
    "adaptive on, pruning only": (0.95, 0.99, 1.0, -6.0, 0.05),
}
#: batch size -> graf image pairs
BATCHES = {1: [(1, 2)], 2: [(1, 2), (1, 3)]}
IMPLEMENTATIONS = ("transformers", "keypoints", "keypoints bf16")


def detector():
    """SuperPoint with the released encoder and descriptor head when present, a random detector
    head (He-normal, zero bias, sharpened x10 so scores spread), threshold 0, 1024 keypoints."""
    import torch

    import keypoints

    torch.manual_seed(0)
    options = {"max_keypoints": NUM_KEYPOINTS, "keypoint_threshold": 0.0}
    if PARTIAL.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keypoints.SuperPoint.from_pretrained(
                PARTIAL, strict=False, backend="torch", **options
            )
        heads = (model.convPa, model.convPb)
    else:
        model = keypoints.SuperPoint(keypoints.SuperPointConfig(**options))
        heads = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for module in heads:
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            module.bias.zero_()
        model.convPb.weight.mul_(10.0)
    return model.eval()


def make_inputs(path: Path) -> None:
    """Detect graf img1..img3 at 480x640 and save, per batch size, keypoints (B, 2, N, 2) in
    pixels of the 480x640 frame, descriptors (B, 2, N, 256) and mask (B, 2, N)."""
    import torch

    import keypoints

    images = [GRAF / f"img{i}.ppm" for i in (1, 2, 3)]
    features = keypoints.detect([str(p) for p in images], detector(), resize=(HEIGHT, WIDTH))
    per_image = {}
    for i, f in enumerate(features, start=1):
        if len(f) != NUM_KEYPOINTS:
            raise SystemExit(f"img{i}.ppm gave {len(f)} keypoints, not {NUM_KEYPOINTS}")
        # in pixels of the 480x640 image the network saw (f.image_size is (width, height))
        scale = torch.tensor([WIDTH / f.image_size[0], HEIGHT / f.image_size[1]])
        per_image[i] = ((f.keypoints + 0.5) * scale - 0.5, f.descriptors.float())
    inputs = {}
    for batch, pairs in BATCHES.items():
        kp = torch.stack([torch.stack([per_image[a][0], per_image[b][0]]) for a, b in pairs])
        desc = torch.stack([torch.stack([per_image[a][1], per_image[b][1]]) for a, b in pairs])
        mask = torch.ones(kp.shape[:3], dtype=torch.bool)
        inputs[batch] = {"keypoints": kp, "descriptors": desc, "mask": mask}
    torch.save(inputs, path)


def their_config(case: str):
    import transformers

    depth, width = CASES[case][:2]
    return transformers.LightGlueConfig(
        keypoint_detector_config=transformers.SuperPointConfig(max_keypoints=NUM_KEYPOINTS),
        depth_confidence=depth,
        width_confidence=width,
        filter_threshold=0.0,  # random weights give low scores: keep every mutual match
    )


def make_weights(case: str, path: Path) -> None:
    """transformers' random weights (seed 0) with the final projections set to 8 x identity and
    the case's biases (see the module docstring), saved as its state dict."""
    import torch
    import transformers

    _, _, token_bias, match_bias, token_std = CASES[case]
    torch.manual_seed(0)
    model = transformers.LightGlueForKeypointMatching(their_config(case))
    with torch.no_grad():
        for layer in model.match_assignment_layers:
            layer.final_projection.weight.copy_(8 * torch.eye(256))
            layer.final_projection.bias.zero_()
            layer.matchability.bias.fill_(match_bias)
        for layer in model.token_confidence:
            layer.token.bias.fill_(token_bias)
            if token_std > 0:
                layer.token.weight.normal_(0, token_std)
    torch.save(model.state_dict(), path)


def run_config(name: str, case: str, batch: int, weights: str, inputs: str, out: str,
               runs: int, warmup: int, threads: int) -> dict:  # fmt: skip
    """Time one implementation on one case and batch in this process; saves its outputs."""
    import torch

    torch.set_num_threads(threads)
    data = torch.load(inputs, weights_only=True)[batch]
    kp, desc, mask = data["keypoints"], data["descriptors"], data["mask"]
    state = torch.load(weights, weights_only=True)
    n = kp.shape[2]
    if name == "transformers":
        import transformers

        model = transformers.LightGlueForKeypointMatching(their_config(case)).eval()
        model.load_state_dict(state, strict=True)
        del state
        int_mask = mask.int()

        def call():
            with torch.inference_mode():
                matches, scores, prune, _, _ = model._match_image_pair(
                    kp.clone(), desc, HEIGHT, WIDTH, mask=int_mask
                )
            return tuple(t.reshape(batch, 2, n) for t in (matches, scores, prune))

    else:
        from keypoints.models.lightglue import LightGlueMatcher, LightGlueMatcherConfig

        depth, width = CASES[case][:2]
        config = LightGlueMatcherConfig(
            depth_confidence=depth, width_confidence=width, filter_threshold=0.0
        )
        model = LightGlueMatcher(config).eval()
        model.set_precision("bf16" if name.endswith("bf16") else "fp32")
        model.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith("keypoint_detector")},
            strict=True,
        )
        del state
        sizes = torch.tensor([WIDTH, HEIGHT]).expand(batch, 2, 2)

        def call():
            with torch.inference_mode():
                return model(kp, desc, sizes, mask)

    timing = time_calls(call, runs, warmup)
    matches, scores, prune = timing.pop("result")
    torch.save({"matches": matches.long(), "scores": scores.float(), "prune": prune.long()}, out)
    matched = ((matches[:, 0] > -1) & mask[:, 0]).sum()
    return {
        "median_ms": timing["median_ms"] / batch,
        "min_ms": timing["min_ms"] / batch,
        "peak_rss_mib": timing["peak_rss_mib"],
        "matches": int(matched) / batch,
        "mean_layers": float(prune[mask].float().mean()),
        "threads": torch.get_num_threads(),
    }


def compare(outputs: dict, reference: dict, mask) -> tuple[float, float]:
    """The fraction of keypoints with the same match (or the same "unmatched") as the
    reference, and the largest matching-score difference."""
    same = float((outputs["matches"][mask] == reference["matches"][mask]).float().mean())
    diff = float((outputs["scores"][mask] - reference["scores"][mask]).abs().max())
    return same, diff


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    threads = max(1, torch.get_num_threads() - 1)  # leave a core to the rest of the machine
    threads_help = f"torch threads in each child (default: cores - 1 = {threads})"
    parser.add_argument("--threads", type=int, default=threads, help=threads_help)
    parser.add_argument("--cases", default=";".join(CASES), help="semicolon-separated")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="comma-separated")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        name, case, batch, weights, inputs, out = args.child
        if name == "prepare":  # inputs and weights in a child too: a child's peak RSS starts
            make_inputs(Path(inputs))  # at its parent's, so the parent must stay small
            for i, each in enumerate(json.loads(case)):
                make_weights(each, Path(weights) / f"weights{i}.pt")
            print(json.dumps({}))
            return
        row = run_config(name, case, int(batch), weights, inputs, out, args.runs, args.warmup,
                         args.threads)  # fmt: skip
        print(json.dumps(row))
        return

    try:  # not imported here: the parent stays small (see "prepare")
        transformers_version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("transformers is not installed (pip install -e '.[test]')") from None
    if not GRAF.exists():
        raise SystemExit(f"benchmark images not found: {GRAF} (../shared/data beside the repo)")
    cases = [c for c in args.cases.split(";") if c]
    batches = [int(b) for b in args.batches.split(",")]
    unknown = [c for c in cases if c not in CASES] + [b for b in batches if b not in BATCHES]
    if unknown:
        raise SystemExit(f"unknown cases or batches: {unknown}")

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.pt"
        run_child(__file__, ["--child", "prepare", json.dumps(cases), "0", tmp, str(inputs), "-"])
        masks = {b: v["mask"] for b, v in torch.load(inputs, weights_only=True).items()}
        for i, case in enumerate(cases):
            weights = Path(tmp) / f"weights{i}.pt"
            for batch in batches:
                results = {}
                for name in IMPLEMENTATIONS:
                    out = Path(tmp) / f"{name}.pt"
                    child = ["--runs", str(args.runs), "--warmup", str(args.warmup)]
                    child += ["--threads", str(args.threads), "--child", name, case, str(batch)]
                    row = run_child(__file__, [*child, str(weights), str(inputs), str(out)])
                    row["outputs"] = torch.load(out, weights_only=True)
                    results[name] = {"case": case, "batch": batch, "implementation": name, **row}
                reference = results["transformers"]
                for row in results.values():
                    row["ratio"] = reference["median_ms"] / row["median_ms"]
                    row["ratio_min"] = reference["min_ms"] / row["min_ms"]
                    row["same_matches"], row["max_score_diff"] = compare(
                        row["outputs"], reference["outputs"], masks[batch]
                    )
                    rows.append(row)
                for row in results.values():
                    del row["outputs"]

    meta = {
        "keypoints_per_image": NUM_KEYPOINTS,
        "image_size": [HEIGHT, WIDTH],
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers_version,
        "weights": "random (seed 0, final projections 8 x identity, biases per case)",
        "load_average_1min": [load_before, os.getloadavg()[0]],
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return
    print(
        f"LightGlue matcher only, {NUM_KEYPOINTS} + {NUM_KEYPOINTS} keypoints per pair (Oxford "
        f"graf at {WIDTH}x{HEIGHT}), CPU, torch threads: {args.threads}, {args.runs} runs after "
        f"{args.warmup} warm-up, torch {meta['torch']}, transformers {meta['transformers']}.\n"
        "RANDOM weights (the released ones cannot be downloaded here), final projections set to "
        "8 x identity; biases per case (see the docstring): 'early stops' stops every pair "
        "after the first layer; 'pruning only' prunes keypoints without stopping. ms per pair; "
        "ratio = transformers' time / ours; same match = fraction of keypoints whose match (or "
        "non-match) equals transformers'; max |score difference| against "
        "transformers. 1-minute load average before / after: "
        f"{load_before:.1f} / {meta['load_average_1min'][1]:.1f} ({os.cpu_count()} CPUs).\n"
    )
    header = ["case", "batch", "implementation", "median ms", "min ms",
              "transformers/ours (median)", "transformers/ours (min)", "matches",
              "mean layers/keypoint", "same match as transformers", "max score diff",
              "peak RSS MiB"]  # fmt: skip
    table = []
    for row in rows:
        ours = row["implementation"] != "transformers"
        table.append([
            row["case"], str(row["batch"]), row["implementation"],
            f"{row['median_ms']:.0f}", f"{row['min_ms']:.0f}",
            f"{row['ratio']:.2f}x" if ours else "-", f"{row['ratio_min']:.2f}x" if ours else "-",
            f"{row['matches']:.0f}", f"{row['mean_layers']:.2f}",
            f"{row['same_matches']:.4f}" if ours else "reference",
            f"{row['max_score_diff']:.1e}" if ours else "-", f"{row['peak_rss_mib']:.0f}",
        ])  # fmt: skip
    print(cpu_info() + "\n")
    print_table(header, table)
    noisy = sum(r["median_ms"] > 1.5 * r["min_ms"] for r in rows)
    if noisy or load_before >= 1:
        print(
            f"\nWarning: the machine was busy (load average {load_before:.1f} before the run; "
            f"{noisy} rows with median > 1.5 x min). When other processes compete for the cores "
            "torch uses, a preempted thread stalls the others and calls take several times "
            "their normal time, for whole children: rerun on a quiet machine or with fewer "
            "--threads."
        )


if __name__ == "__main__":
    main()
