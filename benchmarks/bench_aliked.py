"""ALIKED end to end: kornia's ALIKED (the reference) vs keypoints, same weights, same images.

For each workload (640x480 batch 1 and 4, 1024x768 batch 1) and configuration, a subprocess
(so peak RSS is its own) runs warm-up calls then --runs timed calls. The tables give median and
min ms per image, the speed-up against kornia's median in the same run, keypoint agreement
with kornia, peak RSS, and the median ms of each stage.

    python benchmarks/bench_aliked.py [--model aliked-n16] [--runs 10] [--json]

The reference is kornia.feature.ALIKED (kornia >= 0.9, Apache-2.0, a plain-torch port of
Shiaoming/ALIKED; `pip install kornia`), loaded with the released weights from
../shared/data/weights/aliked. It keeps strict local maxima only where the original keeps ties
(its docstring explains), so the keypoint sets differ slightly by design: agreement is the
fraction of kornia's keypoints within 0.5 px of one of ours. Without kornia, or without the
weights, only our configurations run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import (
    DATA,
    WORKLOADS,
    StageTimer,
    agreement,
    instrument_keypoints,
    load_images,
    report,
    run_child,
    time_calls,
)

CONFIGS = {
    "kornia": "kornia.feature.ALIKED, fp32, default layout (the reference)",
    "keypoints fp32": "keypoints.detect, fp32 (channels-last; NMS in onnxruntime when installed)",
    "keypoints bf16": "keypoints.detect in the fast mode: precision='bf16'",
}
THRESHOLD = 0.2  # the reference's default detection threshold


def run_config(name: str, model_name: str, max_keypoints: int, workload: str, runs: int,
               warmup: int, out: str) -> dict:  # fmt: skip
    """Time one configuration on one workload in this process; saves per-image outputs."""
    import numpy as np
    import torch

    (height, width), batch = WORKLOADS[workload]
    images = load_images((height, width), batch)
    timer = StageTimer()
    if name == "kornia":
        from kornia.feature import ALIKED

        model = ALIKED(model_name, max_keypoints, THRESHOLD, nms_radius=2).eval()
        state = torch.load(DATA / "weights/aliked" / f"{model_name}.pth", weights_only=True)
        model.load_state_dict(state, strict=False)
        timer.wrap(model, "extract_dense_map", "network")
        timer.wrap(model.dkd, "forward", "nms/keypoints")
        timer.wrap(model.desc_head, "forward", "descriptors")

        def to_tensor():
            arrays = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images])
            return torch.from_numpy(arrays).permute(0, 3, 1, 2)

        preprocess = timer.timed(to_tensor, "preprocess")

        def call():
            with torch.inference_mode():
                features = model(preprocess())
            return [
                {
                    "keypoints": f.keypoints,
                    "scores": f.keypoint_scores,
                    "descriptors": f.descriptors,
                }  # fmt: skip
                for f in features
            ]

    else:
        import keypoints

        precision = "bf16" if name.endswith("bf16") else "fp32"
        model = keypoints.load_model(model_name, precision=precision)
        instrument_keypoints(model, timer)
        options = {"max_keypoints": max_keypoints, "threshold": THRESHOLD}

        def call():
            features = keypoints.detect(images, model, resize=None, batch_size=batch, **options)
            return [
                {"keypoints": f.keypoints, "scores": f.scores, "descriptors": f.descriptors}
                for f in features
            ]

    timing = time_calls(call, runs, warmup, timer)
    result = timing.pop("result")
    torch.save([{k: v.detach().cpu().float() for k, v in r.items()} for r in result], out)
    per_image = {k: timing[k] / batch for k in ("median_ms", "min_ms")}
    timing["stages_ms"] = {k: v / batch for k, v in timing["stages_ms"].items()}
    return {**timing, **per_image, "keypoints": sum(len(r["scores"]) for r in result) / batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="aliked-n16")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-keypoints", type=int, default=1024)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        name, workload, out = args.child
        timing = run_config(
            name, args.model, args.max_keypoints, workload, args.runs, args.warmup, out
        )
        print(json.dumps(timing))
        return

    import torch

    configs = list(CONFIGS)
    try:
        import kornia.feature  # noqa: F401
    except ImportError:
        print("kornia is not installed: no reference column (pip install kornia)")
        configs.remove("kornia")
    if not (DATA / "weights/aliked" / f"{args.model}.pth").exists() and "kornia" in configs:
        print(f"no {args.model}.pth in ../shared/data: no reference column")
        configs.remove("kornia")
    rows: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads.split(","):
            for name in configs:
                out = str(Path(tmp) / "out.pt")
                child = ["--runs", str(args.runs), "--warmup", str(args.warmup)]
                child += ["--model", args.model, "--max-keypoints", str(args.max_keypoints)]
                row = run_child(__file__, [*child, "--child", name, workload, out])
                row["outputs"] = torch.load(out, weights_only=True)
                rows[workload, name] = row

    for (workload, _), row in rows.items():
        reference = rows.get((workload, "kornia"))
        row["ratio"] = row["ratio_min"] = row["agreement"] = None
        if reference:
            row["ratio"] = reference["median_ms"] / row["median_ms"]
            row["ratio_min"] = reference["min_ms"] / row["min_ms"]
            row["agreement"] = min(
                agreement(o["keypoints"], r["keypoints"])
                for o, r in zip(row["outputs"], reference["outputs"])
            )
    for row in rows.values():
        del row["outputs"]

    meta = {
        "model": args.model,
        "max_keypoints": args.max_keypoints,
        "threshold": THRESHOLD,
        "runs": args.runs,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    title = (
        f"{args.model} end to end, max_keypoints={args.max_keypoints}, threshold={THRESHOLD}, "
        f"{args.runs} runs after {args.warmup} warm-up, torch {meta['torch']}, "
        f"{meta['threads']} threads; ms per image"
    )
    report(rows, meta, title, args.json, with_diff=False, descriptions=CONFIGS)


if __name__ == "__main__":
    main()
