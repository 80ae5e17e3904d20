"""SuperPoint end to end: transformers vs keypoints, same weights, same images, same machine.

For each workload (640x480 batch 1 and 4, 1024x768 batch 1) and configuration, a subprocess
(so peak RSS is its own) runs warm-up calls then --runs timed calls. The tables give median and
min ms per image, the speed-up against transformers' median in the same run, keypoint
agreement and the largest output difference against transformers, peak RSS, and the median ms
of each stage (preprocess, network, NMS/keypoints, descriptors, post-process, other).

    python benchmarks/bench_superpoint.py [--runs 10] [--max-keypoints 1024] [--json]

Weights: the released SuperPoint encoder and descriptor head from ../shared/data when present
(the detector head is random: no complete checkpoint is available here), else random weights.
Timing does not depend on the weights' values, only on the number of keypoints, which is capped
by --max-keypoints. Images are resized to the workload's size before timing, so all
configurations see the same pixels and report keypoints in the same frame.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
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

PARTIAL = DATA / "weights/superpoint_partial/superpoint_v1_encoder_descriptor.safetensors"
CONFIGS = {
    "transformers": "transformers SuperPointForKeypointDetection + processor + post-process",
    "keypoints-hf torch": "keypoints SuperPointForKeypointDetection + processor + post-process, "
    "dense network and NMS in torch",
    "keypoints-hf onnxruntime": "the same with the dense network and NMS in onnxruntime "
    "(parity mode: the default when onnxruntime is installed)",
    "keypoints-hf bf16": "the facade in the fast mode: precision='bf16' (dense network under "
    "bfloat16 autocast, channels-last; NMS in onnxruntime)",
    "keypoints-hf int8": "the facade with precision='int8' (the fast mode's choice for "
    "SuperPoint: the dense network statically quantized, in onnxruntime)",
    "keypoints-detect onnxruntime": "keypoints.detect (native API, resize=None), parity mode",
    "keypoints-detect bf16": "keypoints.detect with precision='bf16'",
    "keypoints-detect int8": "keypoints.detect with precision='int8' (= 'fast' for SuperPoint)",
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
    keypoints.SuperPointForKeypointDetection.from_core(model).save_pretrained(directory)
    keypoints.SuperPointImageProcessor().save_pretrained(directory)


def instrument_transformers(model, timer: StageTimer) -> None:
    """Time transformers' stages: its encoder and head convolutions are the network, its
    simple_nms and _extract_keypoints the keypoints, _sample_descriptors the descriptors."""
    from transformers.models.superpoint import modeling_superpoint

    for module in (
        model.encoder,
        model.keypoint_decoder.conv_score_a,
        model.keypoint_decoder.conv_score_b,
        model.descriptor_decoder.conv_descriptor_a,
        model.descriptor_decoder.conv_descriptor_b,
    ):
        timer.wrap(module, "forward", "network")
    timer.wrap(modeling_superpoint, "simple_nms", "nms/keypoints")
    timer.wrap(model.keypoint_decoder, "_extract_keypoints", "nms/keypoints")
    timer.wrap(model.descriptor_decoder, "_sample_descriptors", "descriptors")


def run_config(name: str, checkpoint: str, workload: str, runs: int, warmup: int, out: str):
    """Time one configuration on one workload in this process; saves per-image outputs
    (keypoints in pixels of the processed image) to ``out``."""
    import torch

    (height, width), batch = WORKLOADS[workload]
    images = load_images((height, width), batch)
    sizes = [(height, width)] * batch
    backend = "torch" if name.endswith("torch") else "auto"
    precision = name.rsplit(" ", 1)[-1] if name.endswith(("bf16", "int8")) else "fp32"
    timer = StageTimer()
    if name.startswith("keypoints-detect"):
        import keypoints

        model = keypoints.load_model(checkpoint, backend=backend, precision=precision)
        instrument_keypoints(model, timer)

        def call():
            features = keypoints.detect(images, model, resize=None, batch_size=batch)
            return [
                {"keypoints": f.keypoints, "scores": f.scores, "descriptors": f.descriptors}
                for f in features
            ]

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
        if name == "transformers":
            instrument_transformers(model, timer)
        else:
            instrument_keypoints(model, timer)
        preprocess = timer.timed(processor, "preprocess")  # __call__ is looked up on the class
        timer.wrap(processor, "post_process_keypoint_detection", "post-process")
        size = {"height": height, "width": width}

        def call():
            with torch.no_grad():
                inputs = preprocess(images, return_tensors="pt", size=size)
                outputs = model(**inputs)
            results = processor.post_process_keypoint_detection(outputs, sizes)
            scale = torch.tensor([width, height])
            return [
                {
                    # the relative keypoints back in pixels (post-processing truncates to int)
                    "keypoints": outputs.keypoints[i, : len(r["scores"])] * scale,
                    "scores": r["scores"],
                    "descriptors": r["descriptors"],
                }
                for i, r in enumerate(results)
            ]

    timing = time_calls(call, runs, warmup, timer)
    result = timing.pop("result")
    torch.save([{k: v.detach().cpu().float() for k, v in r.items()} for r in result], out)
    per_image = {k: timing[k] / batch for k in ("median_ms", "min_ms")}
    timing["stages_ms"] = {k: v / batch for k, v in timing["stages_ms"].items()}
    return {**timing, **per_image, "keypoints": sum(len(r["scores"]) for r in result) / batch}


def compare(outputs: list[dict], reference: list[dict]) -> tuple[float, float | None]:
    """Keypoint agreement (fraction of the reference's keypoints within 0.5 px of ours) and,
    when the keypoint sets are identical, the largest difference of keypoints, scores and
    descriptors (compared in one canonical order: torch.topk orders equal scores arbitrarily)."""
    import numpy as np

    agree = min(agreement(o["keypoints"], r["keypoints"]) for o, r in zip(outputs, reference))
    if agree < 1 or any(len(o["scores"]) != len(r["scores"]) for o, r in zip(outputs, reference)):
        return agree, None

    def canonical(d: dict) -> dict:
        kp = d["keypoints"].numpy()
        order = np.lexsort((kp[:, 0], kp[:, 1])) if len(kp) else np.zeros(0, np.int64)
        return {k: v[order] for k, v in d.items()}

    diff = 0.0
    for o, r in zip(outputs, reference):
        o, r = canonical(o), canonical(r)
        for k in ("keypoints", "scores", "descriptors"):
            if len(r[k]):
                diff = max(diff, float((o[k] - r[k]).abs().max()))
    return agree, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-keypoints", type=int, default=1024)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        name, checkpoint, workload, out = args.child
        print(json.dumps(run_config(name, checkpoint, workload, args.runs, args.warmup, out)))
        return

    import torch

    try:
        import transformers  # noqa: F401
    except ImportError:
        print("transformers is not installed: no reference column (pip install -e '.[test]')")
        configs = [c for c in args.configs.split(",") if c != "transformers"]
    else:
        configs = args.configs.split(",")
    rows: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "checkpoint"
        make_checkpoint(checkpoint, args.max_keypoints)
        for workload in args.workloads.split(","):
            for name in configs:
                out = str(Path(tmp) / "out.pt")
                child = ["--runs", str(args.runs), "--warmup", str(args.warmup)]
                row = run_child(__file__, [*child, "--child", name, str(checkpoint), workload, out])
                row["outputs"] = torch.load(out, weights_only=True)
                rows[workload, name] = row

    for (workload, _), row in rows.items():
        reference = rows.get((workload, "transformers"))
        row["ratio"] = row["ratio_min"] = row["agreement"] = row["max_abs_diff"] = None
        if reference:
            row["ratio"] = reference["median_ms"] / row["median_ms"]
            row["ratio_min"] = reference["min_ms"] / row["min_ms"]
            row["agreement"], row["max_abs_diff"] = compare(row["outputs"], reference["outputs"])
    for row in rows.values():
        del row["outputs"]

    meta = {
        "max_keypoints": args.max_keypoints,
        "runs": args.runs,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    title = (
        f"SuperPoint end to end, max_keypoints={args.max_keypoints}, {args.runs} runs after "
        f"{args.warmup} warm-up, torch {meta['torch']}, {meta['threads']} threads; ms per image"
    )
    report(rows, meta, title, args.json, with_diff=True, descriptions=CONFIGS)


if __name__ == "__main__":
    main()
