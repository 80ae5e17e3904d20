"""SuperPoint end to end: transformers vs keypoints, same weights, same image, same machine.

Each configuration runs in its own subprocess (so peak RSS is its own) with warm-up runs first;
the table gives median and min milliseconds per call over --runs runs, the ratio of
transformers' median to ours, the largest output difference against transformers, and peak RSS.

    python benchmarks/bench_superpoint.py [--runs 10] [--max-keypoints 1024] [--json]

Weights: the released SuperPoint encoder and descriptor head from ../shared/data when present
(the detector head is random: no complete checkpoint is available here), else random weights.
Timing does not depend on the weights' values, only on the number of keypoints, which is capped
by --max-keypoints.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

from _common import print_table, run_child, time_calls

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "cats.png"
PARTIAL = (
    ROOT.parent
    / "shared/data/weights/superpoint_partial/superpoint_v1_encoder_descriptor.safetensors"
)
CONFIGS = {
    "transformers": "transformers SuperPointForKeypointDetection + processor + post-process",
    "keypoints-hf torch": "keypoints SuperPointForKeypointDetection + processor + post-process, "
    "dense network and NMS in torch",
    "keypoints-hf onnxruntime": "the same with the dense network and NMS in onnxruntime "
    "(the default when onnxruntime is installed)",
    "keypoints-detect onnxruntime": "keypoints.detect (native API, resize=None), onnxruntime",
    "keypoints-hf bf16": "the facade in the fast mode: precision='bf16' (bfloat16 autocast, "
    "channels-last; needs avx512_bf16 or AMX)",
}


def make_checkpoint(directory: Path, max_keypoints: int) -> None:
    import torch

    import keypoints

    torch.manual_seed(0)
    if PARTIAL.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keypoints.SuperPoint.from_pretrained(PARTIAL, strict=False)
    else:
        model = keypoints.SuperPoint()
    model.config = model.config.replace(max_keypoints=max_keypoints)
    model.save_pretrained(directory)
    keypoints.SuperPointImageProcessor().save_pretrained(directory)


def canonical(outputs: dict) -> dict:
    """Outputs sorted by (score desc, y, x): torch.topk orders equal scores arbitrarily
    (transformers), ours row-major, so compare in one canonical order."""
    import numpy as np

    kp, sc = outputs["keypoints"].numpy(), outputs["scores"].numpy()
    order = np.lexsort((kp[:, 0], kp[:, 1], -sc)) if len(sc) else np.zeros(0, np.int64)
    return {k: v[order].float() for k, v in outputs.items()}


def run_config(name: str, checkpoint: str, runs: int, warmup: int, out: str | None) -> dict:
    """Time one configuration in this process; returns timings and (optionally) saves outputs."""
    import torch
    from PIL import Image

    image = Image.open(IMAGE).convert("RGB")
    sizes = [(image.height, image.width)]
    backend = "onnxruntime" if name.endswith("onnxruntime") else "torch"
    precision = "bf16" if name.endswith("bf16") else "fp32"
    if name.startswith("keypoints-detect"):
        import keypoints

        model = keypoints.load_model(checkpoint, backend=backend, precision=precision)

        def call():
            f = keypoints.detect(image, model, resize=None)[0]
            return {"keypoints": f.keypoints, "scores": f.scores, "descriptors": f.descriptors}

    else:
        if name == "transformers":
            import transformers as lib
        else:
            import keypoints as lib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            processor = lib.AutoImageProcessor.from_pretrained(checkpoint)
        kwargs = {} if name == "transformers" else {"backend": backend, "precision": precision}
        model = lib.SuperPointForKeypointDetection.from_pretrained(checkpoint, **kwargs).eval()

        def call():
            with torch.no_grad():
                inputs = processor([image], return_tensors="pt")
                outputs = model(**inputs)
            r = processor.post_process_keypoint_detection(outputs, sizes)[0]
            return {
                "keypoints": outputs.keypoints[0],
                "scores": r["scores"],
                "descriptors": r["descriptors"],
            }

    timing = time_calls(call, runs, warmup)
    result = timing.pop("result")
    if out:
        torch.save({k: v.detach().cpu() for k, v in result.items()}, out)
    return {**timing, "keypoints": int(result["scores"].shape[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-keypoints", type=int, default=1024)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--child", nargs=3, metavar=("NAME", "CHECKPOINT", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.child:
        name, checkpoint, out = args.child
        print(json.dumps(run_config(name, checkpoint, args.runs, args.warmup, out)))
        return

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "checkpoint"
        make_checkpoint(checkpoint, args.max_keypoints)
        rows = {}
        for name in CONFIGS:
            if name == "transformers":
                try:
                    import transformers  # noqa: F401
                except ImportError:
                    continue
            out = str(Path(tmp) / f"{name.replace(' ', '_')}.pt")
            child = ["--runs", str(args.runs), "--warmup", str(args.warmup)]
            rows[name] = run_child(__file__, [*child, "--child", name, str(checkpoint), out])
            rows[name]["outputs"] = torch.load(out, weights_only=True)

    reference = rows.get("transformers")
    ref = canonical(reference["outputs"]) if reference else None
    for name, row in rows.items():
        outputs = canonical(row.pop("outputs"))
        row["ratio"] = reference["median_ms"] / row["median_ms"] if reference else None
        row["max_abs_diff"] = None
        # keypoints.detect returns absolute float keypoints: not comparable element-wise
        if (
            ref
            and not name.startswith("keypoints-detect")
            and outputs["scores"].shape == ref["scores"].shape
        ):
            row["max_abs_diff"] = max(
                float((outputs[k] - ref[k]).abs().max()) if len(ref[k]) else 0.0
                for k in ("keypoints", "scores", "descriptors")
            )

    meta = {
        "image": f"{IMAGE.name} 640x480, batch 1",
        "max_keypoints": args.max_keypoints,
        "runs": args.runs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return
    print(
        f"SuperPoint end to end, {meta['image']}, max_keypoints={args.max_keypoints}, "
        f"{args.runs} runs after {args.warmup} warm-up, torch {meta['torch']}, "
        f"{meta['threads']} threads\n"
    )
    header = (
        "configuration",
        "median ms",
        "min ms",
        "speed-up vs transformers",
        "max abs diff vs transformers",
        "keypoints",
        "peak RSS MiB",
    )
    print_table(
        header,
        [
            (
                name,
                f"{row['median_ms']:.0f}",
                f"{row['min_ms']:.0f}",
                f"{row['ratio']:.2f}x" if row["ratio"] else "n/a",
                f"{row['max_abs_diff']:.1e}" if row["max_abs_diff"] is not None else "n/a",
                str(row["keypoints"]),
                f"{row['peak_rss_mib']:.0f}",
            )
            for name, row in rows.items()
        ],
    )
    print("\n" + "\n".join(f"- {k}: {v}" for k, v in CONFIGS.items() if k in rows))


if __name__ == "__main__":
    main()
