"""Bulk extraction: `keypoints.extract` on a folder of generated images, local engine with 0, 1
and 2 decoding workers and the Ray engine, plus the file size with --half-descriptors.

    python benchmarks/bench_extract.py [--images 200] [--model aliked-n16] [--json]

The images are random crops of the real images in ../shared/data (and examples/), resized to
640x480 and saved as JPEG (quality 90), so decoding costs what it costs on real photos. Each
configuration runs in its own subprocess; images/s counts everything from the call to the
written file (model loading, and for Ray starting a local instance, included), and peak RSS is
the calling process's (Ray's actors are separate processes, not counted).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
from pathlib import Path

from _common import DATA, ROOT, cpu_info, print_table, run_child

CONFIGS = {
    "local, 0 workers": {"engine": "local", "workers": 0},
    "local, 1 worker": {"engine": "local", "workers": 1},
    "local, 2 workers": {"engine": "local", "workers": 2},
    "local, 2 workers, half descriptors": {
        "engine": "local",
        "workers": 2,
        "half_descriptors": True,
    },  # fmt: skip
    "ray, 2 actors": {"engine": "ray", "workers": 2},
}


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    from PIL import Image

    sources = [ROOT / "examples" / "cats.png"]
    for pattern in ("images/**/*.png", "images/**/*.jpg", "homography/**/img*.p?m"):
        sources += sorted(DATA.glob(pattern))
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as image:
            image = image.convert("RGB")
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = image.crop((x, y, x + cw, y + ch)).resize((640, 480), Image.Resampling.BILINEAR)
        crop.save(folder / f"{i:04d}.jpg", quality=90)


def run_config(name: str, folder: str, output: str, model: str, max_keypoints: int) -> dict:
    import keypoints
    from keypoints.pipeline import extract_report

    report = extract_report(folder, output, model, max_keypoints=max_keypoints, progress=False,
                            **CONFIGS[name])  # fmt: skip
    assert not report.errors, report.errors
    return {
        "images": report.extracted,
        "seconds": report.seconds,
        "images_per_s": report.extracted / report.seconds,
        "file_mib": Path(output).stat().st_size / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "keypoints_version": keypoints.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="aliked-n16")
    parser.add_argument("--max-keypoints", type=int, default=2048)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, folder, output = args.child
        print(json.dumps(run_config(name, folder, output, args.model, args.max_keypoints)))
        return

    configs = list(CONFIGS)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("Ray is not installed: no Ray row (pip install -e '.[ray]')")
        configs.remove("ray, 2 actors")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_images(folder, args.images)
        for i, name in enumerate(configs):
            output = str(Path(tmp) / f"features-{i}.h5")
            child = ["--model", args.model, "--max-keypoints", str(args.max_keypoints)]
            rows[name] = run_child(__file__, [*child, "--child", name, str(folder), output])
    if args.json:
        print(json.dumps({"images": args.images, "model": args.model, "results": rows}, indent=2))
        return
    print(
        f"keypoints extract: {args.images} JPEG images 640x480, {args.model}, "
        f"max_keypoints={args.max_keypoints}, 2 CPU cores\n"
    )
    print(cpu_info() + "\n")
    print_table(
        ("configuration", "images/s", "seconds", "peak RSS MiB", "file MiB"),
        [
            (
                name,
                f"{r['images_per_s']:.2f}",
                f"{r['seconds']:.1f}",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['file_mib']:.1f}",
            )  # fmt: skip
            for name, r in rows.items()
        ],
    )


if __name__ == "__main__":
    main()
