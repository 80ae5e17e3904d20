"""Every registered model through ``keypoints.detect``: ms per image, keypoints, peak RSS.

    python benchmarks/bench_models.py [--runs 5] [--warmup 1] [--json]

Two settings: ``examples/cats.png`` at its native 640x480, and a 791x1087 photo
(../shared/data/images/superglue/phototourism/london_bridge_19481797_2295892421.jpg) resized to
1024 px on its longest side; each model with its default options, each model in its own
process. Models whose weights cannot be had offline here (superpoint: Hub; superpoint-open:
download) are timed with stand-in weights of the same architecture (the released encoder and
descriptor head plus a random detector head, and random weights, respectively), and marked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

from _common import cpu_info, print_table, run_child, time_calls

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETTINGS = {
    "640x480": (ROOT / "examples" / "cats.png", None),
    "1024px": (
        SHARED / "images/superglue/phototourism/london_bridge_19481797_2295892421.jpg",
        1024,
    ),
}
PARTIAL = SHARED / "weights/superpoint_partial/superpoint_v1_encoder_descriptor.safetensors"


def stand_in(name: str, directory: Path) -> str:
    """A local checkpoint with the architecture of ``name`` for models not available here."""
    import torch

    import keypoints
    from keypoints.models.superpoint_open import SuperPointOpen

    torch.manual_seed(0)
    if name == "superpoint":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if PARTIAL.exists():
                model = keypoints.SuperPoint.from_pretrained(PARTIAL, strict=False)
            else:
                model = keypoints.SuperPoint()
        keypoints.SuperPointForKeypointDetection.from_core(model).save_pretrained(directory / name)
        return str(directory / name)
    path = directory / "superpoint_v6_from_tf.pth"
    torch.save(SuperPointOpen().state_dict(), path)
    return str(path)


def run_model(source: str, runs: int, warmup: int) -> dict:
    from PIL import Image

    import keypoints

    model = keypoints.load_model(source)
    out = {}
    for setting, (path, resize) in SETTINGS.items():
        image = Image.open(path).convert("RGB")

        def call(image=image, resize=resize):
            return keypoints.detect(image, model, resize=resize)[0]

        timing = time_calls(call, runs, warmup)
        out[setting] = {"median_ms": timing["median_ms"], "keypoints": len(timing["result"])}
    out["peak_rss_mib"] = timing["peak_rss_mib"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", metavar="SOURCE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_model(args.child, args.runs, args.warmup)))
        return

    import torch

    import keypoints

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in keypoints.list_models():
            name, source = entry["name"], entry["name"]
            if not entry["offline"]:
                source, name = stand_in(name, Path(tmp)), f"{name} (stand-in weights)"
            child = ["--runs", str(args.runs), "--warmup", str(args.warmup), "--child", source]
            results[name] = run_child(__file__, child)
            print(f"measured {name}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"keypoints.detect per image, default options, median of {args.runs} runs after "
        f"{args.warmup} warm-up, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    header = ("model", "640x480 ms", "keypoints", "1024 px ms", "keypoints", "peak RSS MiB")
    rows = [
        (
            name,
            f"{r['640x480']['median_ms']:.0f}",
            str(r["640x480"]["keypoints"]),
            f"{r['1024px']['median_ms']:.0f}",
            str(r["1024px"]["keypoints"]),
            f"{r['peak_rss_mib']:.0f}",
        )
        for name, r in results.items()
    ]
    print(cpu_info() + "\n")
    print_table(header, rows)


if __name__ == "__main__":
    main()
