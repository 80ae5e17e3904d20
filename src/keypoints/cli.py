"""The ``keypoints`` command line: a thin layer over :func:`keypoints.detect` and friends.

Errors a user can cause end in one line on stderr and exit code 2; anything unexpected gives
exit code 1 and a pointer to ``--debug`` for the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import click
import numpy as np

from . import __version__
from .errors import ConfigError, KeypointsError

EXIT_USER_ERROR = 2
EXIT_UNEXPECTED = 1


def _parse_resize(ctx, param, value: str | None):
    """``1024`` (longest side), ``640x480`` (width x height) or ``none`` (native resolution)."""
    if value is None or value.lower() in ("none", "native"):
        return None
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1 and parts[0] >= 1:
        return parts[0]
    if len(parts) == 2 and min(parts) >= 1:
        return (parts[1], parts[0])  # (height, width)
    raise click.BadParameter(
        f"{value!r}: use a longest side (1024), WIDTHxHEIGHT (640x480) or 'none' for native"
    )


def _resize_option(default: str):
    return click.option(
        "--resize",
        default=default,
        show_default=True,
        callback=_parse_resize,
        help="Longest side in pixels (never upsamples), WIDTHxHEIGHT, or 'none' for native "
        "resolution.",
    )


_backend_option = click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnxruntime"]),
    default="auto",
    show_default=True,
    help="Run the dense network with torch or onnxruntime (auto: onnxruntime when installed).",
)


_precision_option = click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="bf16: faster on CPUs with avx512_bf16/AMX (detectors' dense network, LightGlue's "
    "layers; accuracy cost in the README).",
)


_max_pixels_option = click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=89_478_485,
    show_default=True,
    help="Refuse images with more pixels (Pillow's decompression-bomb limit by default).",
)


_threshold_option = click.option(
    "--threshold", type=float, help="Detection threshold in [0, 1] (model default)."
)


def _detector_options(command):
    """--max-keypoints, --threshold and --nms-radius, the options every detector shares."""
    command = click.option(
        "--nms-radius", type=int, help="Non-maximum suppression radius (model default)."
    )(command)
    command = _threshold_option(command)
    return click.option("--max-keypoints", type=int, help="Keep the N best keypoints (-1: all).")(
        command
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="keypoints")
@click.option("--debug", is_flag=True, help="Show full tracebacks for unexpected errors.")
def cli(debug: bool) -> None:
    """Keypoint detection and description: ALIKED, SuperPoint, SIFT, ORB.

    Keypoints are (x, y) in original-image pixels, pixel centres at integers.
    """


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "-m",
    "--model",
    default="aliked-n16",
    show_default=True,
    help="Model name (see `keypoints models`), checkpoint path (.pth/.safetensors/Hub-layout "
    "folder) or Hub id. The default is bundled and works offline; 'superpoint' downloads "
    "magic-leap-community/superpoint from the Hugging Face Hub on first use.",
)
@click.option(
    "--compare",
    default=None,
    metavar="M1,M2,...",
    help="Run several models and draw one panel per model in <stem>_compare.png "
    "(results go to <stem>.<model>.npz).",
)
@_detector_options
@_resize_option("1024")
@click.option(
    "-o",
    "--output",
    "outdir",
    type=click.Path(file_okay=False),
    default="keypoints_out",
    show_default=True,
    help="Folder for <stem>.png (plot) and <stem>.npz/.json "
    "(keypoints, scores, descriptors, image_size).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["npz", "json"]), default="npz", show_default=True
)
@click.option("--no-plot", is_flag=True, help="Do not write the plots.")
@click.option("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu).")
@_backend_option
@_precision_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Images per call (same-size images share a forward pass).",
)
@_max_pixels_option
def detect(
    images,
    model,
    compare,
    max_keypoints,
    threshold,
    nms_radius,
    resize,
    outdir,
    fmt,
    no_plot,
    device,
    backend,
    precision,
    batch_size,
    max_pixels,
):
    """Detect keypoints in IMAGE... and write one plot and one result file per image."""
    from huggingface_hub.utils import logging as hf_logging

    from .detection import detect as detect_features
    from .models.registry import load_model

    hf_logging.set_verbosity_error()  # our one-line message replaces the Hub's retry chatter
    options = {"max_keypoints": max_keypoints, "threshold": threshold, "nms_radius": nms_radius}
    options = {k: v for k, v in options.items() if v is not None}
    names = [m.strip() for m in compare.split(",") if m.strip()] if compare else [model]
    # weights and option problems stop here, before any image
    nets = {name: load_model(name, device, backend, precision, **options) for name in names}
    if not no_plot:
        import matplotlib

        matplotlib.use("Agg")

    outdir = Path(outdir)
    rows, failures, stems = [], [], set()
    progress = _progress(images)
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        # per image: {model: (features, ms)}, or the error that stopped it
        found: dict[str, dict] = {image: {} for image in chunk}
        errors: dict[str, str] = {}
        for name, net in nets.items():
            for image, result in _detect_chunk(detect_features, chunk, net, resize, max_pixels):
                if isinstance(result, KeypointsError):
                    errors.setdefault(image, str(result))
                else:
                    found[image][name] = result
        for image in chunk:
            if progress is not None:
                progress.update(1)
            if image in errors:
                failures.append((image, errors[image]))
                click.echo(f"keypoints: error: {errors[image]}", err=True)
                continue
            try:
                _write_outputs(image, found[image], outdir, stems, fmt, compare, no_plot)
            except KeypointsError as exc:
                failures.append((image, str(exc)))
                click.echo(f"keypoints: error: {exc}", err=True)
                continue
            for name, (features, ms) in found[image].items():
                width, height = features.image_size
                rows.append((image, name, f"{width}x{height}", str(len(features)), f"{ms:.0f}"))
    if progress is not None:
        progress.close()
    if rows:
        _print_table(("image", "model", "size", "keypoints", "ms"), rows)
        click.echo(f"wrote {len(rows)} result(s) to {outdir}/")
    if failures:
        click.echo(f"keypoints: {len(failures)} of {len(images)} image(s) failed", err=True)
        sys.exit(EXIT_USER_ERROR)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json):
    """List the available models: kind, descriptor size, license, weights, offline use."""
    from .models.registry import list_models

    entries = list_models()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    header = ("name", "kind", "dim", "offline", "license", "weights")
    rows = [
        (
            e["name"],
            e["kind"],
            str(e["descriptor_dim"]),
            "yes" if e["offline"] else "no",
            e["license"],
            e["weights"],
        )
        for e in entries
    ]
    _print_table(header, rows)


_matcher_option = click.option(
    "--matcher",
    type=click.Choice(["mnn", "lightglue"]),
    default="mnn",
    show_default=True,
    help="Mutual nearest neighbour, or LightGlue (by default the release weights trained on "
    "the detector's features; downloaded once, then cached).",
)
_matcher_weights_option = click.option(
    "--matcher-weights",
    help="Other LightGlue weights: a release name (superpoint, aliked, sift, disk), a "
    "checkpoint or a Hub id.",
)


@cli.command("match")
@click.argument("image0")
@click.argument("image1")
@click.option(
    "-m",
    "--model",
    default="aliked-n16",
    show_default=True,
    help="Detector (see `keypoints models`).",
)
@click.option("--max-keypoints", type=int, help="Keep the N best keypoints per image.")
@_threshold_option
@_resize_option("1024")
@click.option("--ratio", type=float, help="Lowe's ratio test, e.g. 0.8.")
@click.option("--max-distance", type=float, help="Drop matches with a larger descriptor distance.")
@_matcher_option
@_matcher_weights_option
@click.option(
    "--verify",
    "verify_model",
    type=click.Choice(["homography", "fundamental"]),
    help="Fit a model with USAC MAGSAC++ and count inliers.",
)
@click.option(
    "--ransac-threshold",
    type=float,
    default=3.0,
    show_default=True,
    help="Inlier threshold in pixels.",
)
@click.option(
    "-o",
    "--output",
    default="matches.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Picture of the matches (inliers green, outliers red).",
)
@_backend_option
@_precision_option
def match_command(
    image0,
    image1,
    model,
    max_keypoints,
    threshold,
    resize,
    ratio,
    max_distance,
    matcher,
    matcher_weights,
    verify_model,
    ransac_threshold,
    output,
    backend,
    precision,
):
    """Match two images and draw the matches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .detection import detect as detect_features
    from .matching import match, verify
    from .models.registry import load_model
    from .viz import plot_matches

    options = {"max_keypoints": max_keypoints, "threshold": threshold}
    options = {k: v for k, v in options.items() if v is not None}
    net = load_model(model, None, backend, precision, **options)
    f0, f1 = detect_features([image0, image1], net, resize=resize)
    extra = {"matcher": matcher_weights} if matcher_weights else {}
    if matcher == "lightglue":
        extra["precision"] = precision
    matches = match(f0, f1, method=matcher, ratio=ratio, max_distance=max_distance, **extra)
    fit = verify(f0, f1, matches, verify_model, ransac_threshold) if verify_model else None
    click.echo(f"keypoints: {len(f0)} in {image0}, {len(f1)} in {image1}")
    click.echo(f"matches: {len(matches)}{' (LightGlue)' if matcher == 'lightglue' else ''}")
    if fit is not None:
        note = f" ({fit.message})" if fit.message else ""
        click.echo(f"inliers ({verify_model}): {fit.num_inliers}{note}")
    fig = plot_matches(image0, image1, f0, f1, matches, None if fit is None else fit.inliers)
    _save_figure(fig, Path(output))
    plt.close(fig)
    click.echo(f"wrote {output}")


@cli.group("eval")
def eval_group():
    """Evaluate detectors on benchmarks."""


@eval_group.command("homography")
@click.argument("dataset", type=click.Path())
@click.option(
    "--models", default="aliked-n16,sift", show_default=True, help="Comma-separated models."
)
@click.option(
    "--max-keypoints",
    type=int,
    default=2048,
    show_default=True,
    help="Keypoints per image (top-k for learned models unless --threshold is given).",
)
@click.option("--threshold", type=float, default=None, help="Detection threshold instead of top-k.")
@_resize_option("none")
@click.option(
    "--ransac-threshold",
    type=float,
    default=3.0,
    show_default=True,
    help="USAC MAGSAC++ threshold in pixels.",
)
@click.option(
    "-o",
    "--output",
    default="results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for summary.md, metrics.json and mma.png.",
)
@_matcher_option
@_precision_option
def eval_homography(
    dataset, models, max_keypoints, threshold, resize, ransac_threshold, output, matcher, precision
):
    """Repeatability, MMA@1-10 px and homography accuracy/AUC on HPatches or Oxford affine."""
    from .evaluation.datasets import load_dataset
    from .evaluation.homography import evaluate_homography, summary_table

    names = [m.strip() for m in models.split(",") if m.strip()]
    sequences = load_dataset(dataset)
    pairs = sum(len(s.pairs) for s in sequences)
    click.echo(
        f"settings: dataset={dataset} ({len(sequences)} sequences, {pairs} pairs), "
        f"models={','.join(names)}, max_keypoints={max_keypoints}, "
        f"threshold={'top-k (0) for learned models' if threshold is None else threshold}, "
        f"resize={'native' if resize is None else resize}, "
        f"matcher={'LightGlue' if matcher == 'lightglue' else 'mutual nearest neighbour'}, "
        f"ransac=USAC MAGSAC++ {ransac_threshold} px, precision={precision}"
    )
    results = evaluate_homography(
        dataset,
        names,
        max_keypoints=max_keypoints,
        threshold=threshold,
        resize=resize,
        ransac_threshold=ransac_threshold,
        precision=precision,
        output=output,
        progress=sys.stderr.isatty(),
        matcher=matcher,
    )
    click.echo(summary_table(results), nl=False)
    click.echo(f"wrote {output}/summary.md, {output}/metrics.json, {output}/mma.png")


@cli.command()
@click.argument("images")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The HDF5 file (hloc's layout). Images already in it are skipped.",
)
@click.option("-m", "--model", default="aliked-n16", show_default=True,
              help="Model name (see `keypoints models`) or checkpoint.")  # fmt: skip
@_detector_options
@_resize_option("1024")
@click.option("--half-descriptors", is_flag=True, help="Store descriptors as float16.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Background threads decoding and resizing images while the model computes.",
)
@click.option("--overwrite", is_flag=True, help="Recompute images already in the output.")
@click.option("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu).")
@_backend_option
@_precision_option
@click.option("--shard-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per shard (a kill loses at most one shard of work).")  # fmt: skip
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="ray: a Ray Data pipeline (`pip install \"keypoints[ray]\"`), --workers "
              "model actors.")  # fmt: skip
@_max_pixels_option
@click.option("--address", default=None,
              help="Ray cluster address (default: RAY_ADDRESS, else a local Ray "
              "instance).")  # fmt: skip
def extract(images, output, model, max_keypoints, threshold, nms_radius, resize,
            half_descriptors, workers, overwrite, device, backend, precision,
            shard_size, max_pixels, engine, address):  # fmt: skip
    """Extract features of IMAGES (a folder, searched recursively, or a text file of paths)
    into one HDF5 file that hloc reads. Resumable: rerun the same command after an
    interruption and it finishes the job."""
    from .extract import extract_report

    report = extract_report(
        images, output, model, resize=resize, half_descriptors=half_descriptors,
        workers=workers, overwrite=overwrite, shard_size=shard_size, device=device,
        engine=engine, address=address, max_pixels=max_pixels,
        backend=backend, precision=precision, progress=sys.stderr.isatty(),
        max_keypoints=max_keypoints, threshold=threshold, nms_radius=nms_radius,
    )  # fmt: skip
    rate = report.extracted / report.seconds if report.seconds else 0.0
    click.echo(
        f"extracted {report.extracted} image(s), skipped {report.skipped} already in "
        f"{output}, {len(report.errors)} bad ({rate:.1f} images/s)"
    )
    for name, reason in report.errors:
        click.echo(f"  bad image {name}: {reason}", err=True)
    if report.errors:  # the rest is done; the exit code tells scripts that some were bad
        click.echo(f"bad images listed in {output}.errors.txt", err=True)
        sys.exit(EXIT_USER_ERROR)


def _pairs_from(source, pairs_file, exhaustive, sequential):
    """Pairs from --pairs FILE, --exhaustive or --sequential K over the names of SOURCE (a
    features file, an image folder or a text file of paths)."""
    from .pairs import exhaustive_pairs, read_pairs, sequential_pairs

    chosen = [pairs_file is not None, exhaustive, sequential is not None]
    if sum(chosen) != 1:
        raise ConfigError("choose exactly one of --pairs FILE, --exhaustive, --sequential K")
    if pairs_file is not None:
        return read_pairs(pairs_file)
    if str(source).endswith((".h5", ".hdf5")):
        from .io.hloc import list_names

        names = list_names(source)
    else:
        from .extract import list_images

        names = list_images(source)[1]
    return exhaustive_pairs(names) if exhaustive else sequential_pairs(names, sequential)


_pairs_options = [
    click.option("--exhaustive", is_flag=True, help="Every pair of images."),
    click.option("--sequential", type=int, metavar="K", help="Each image with the K next ones."),
]


@cli.command("pairs")
@click.argument("source")
@_pairs_options[0]
@_pairs_options[1]
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Text file, one 'name0 name1' per line (hloc's format).")  # fmt: skip
def pairs_command(source, exhaustive, sequential, output):
    """Write the image pairs of SOURCE (features .h5, image folder or list of paths)."""
    from .pairs import write_pairs

    pairs = _pairs_from(source, None, exhaustive, sequential)
    write_pairs(pairs, output)
    click.echo(f"wrote {len(pairs)} pairs to {output}")


@cli.command("match-pairs")
@click.argument("features", type=click.Path(dir_okay=False))
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False),
              help="Text file of pairs, one 'name0 name1' per line.")  # fmt: skip
@_pairs_options[0]
@_pairs_options[1]
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The matches .h5 (hloc's layout); pairs already in it are skipped.")  # fmt: skip
@click.option("--ratio", type=float, help="Lowe's ratio test threshold, in (0, 1].")
@click.option("--max-distance", type=float, help="Drop matches farther than this.")
@_matcher_option
@_matcher_weights_option
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Pairs per LightGlue forward pass.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Recompute pairs already in the output.")
@_precision_option
def match_pairs_command(features, pairs_file, exhaustive, sequential, output, ratio,
                        max_distance, matcher, matcher_weights, batch_size, overwrite,
                        precision):  # fmt: skip
    """Match image pairs of FEATURES (from `keypoints extract`) by mutual nearest neighbour or
    LightGlue into OUTPUT, in hloc's matches layout."""
    from .pairs import match_pairs

    pairs = _pairs_from(features, pairs_file, exhaustive, sequential)
    _, matched, skipped = match_pairs(
        features, pairs, output, method=matcher, ratio=ratio, max_distance=max_distance,
        overwrite=overwrite, progress=sys.stderr.isatty(), matcher=matcher_weights,
        batch_size=batch_size, **({"precision": precision} if matcher == "lightglue" else {}),
    )  # fmt: skip
    click.echo(f"matched {matched} pair(s), skipped {skipped} already in {output}")


@cli.command("colmap")
@click.argument("features", type=click.Path(dir_okay=False))
@click.argument("matches", type=click.Path(dir_okay=False))
@click.option("--database", required=True, type=click.Path(dir_okay=False),
              help="The COLMAP database to create (.db).")  # fmt: skip
@click.option("--image-dir", type=click.Path(file_okay=False),
              help="The images' root folder: cameras from EXIF (COLMAP's importer); without "
              "it, one camera per image from its size.")  # fmt: skip
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False),
              help="Only these pairs (default: every pair in MATCHES).")  # fmt: skip
@click.option("--single-camera", is_flag=True, help="One camera shared by all images.")
@click.option("--no-verify", is_flag=True, help="Skip COLMAP's geometric verification.")
@click.option("--overwrite", is_flag=True, help="Replace an existing database.")
def colmap_command(features, matches, database, image_dir, pairs_file, single_camera,
                   no_verify, overwrite):  # fmt: skip
    """Import FEATURES and MATCHES (hloc layout) into a COLMAP database for
    pycolmap.incremental_mapping (needs `pip install "keypoints[colmap]"`)."""
    from .io.colmap import import_colmap
    from .pairs import read_pairs

    result = import_colmap(
        features, matches, database, image_dir=image_dir,
        pairs=read_pairs(pairs_file) if pairs_file else None, single_camera=single_camera,
        verify=not no_verify, overwrite=overwrite,
    )  # fmt: skip
    click.echo(
        f"wrote {database}: {result.images} images, {result.keypoints} keypoints, "
        f"{result.matched_pairs} matched pairs ({result.matches} matches), "
        f"{result.verified_pairs} verified pairs"
    )


@cli.group("export")
def export_group():
    """Export models to other runtimes."""


@export_group.command("onnx")
@click.argument("model")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--opset", type=int, default=17, show_default=True)
def export_onnx_command(model, output, opset):
    """Write MODEL's dense network to OUTPUT (.onnx): input `image` (B, C, H, W) float32 in
    [0, 1] with dynamic batch, height and width; keypoint selection stays outside the graph."""
    from .models.backends import export_onnx
    from .models.base import KeypointModel
    from .models.registry import load_model

    net = load_model(model, None, "torch")
    if not isinstance(net, KeypointModel) or not net.dense_output_names:
        raise ConfigError(f"'{model}' has no ONNX graph (supported: superpoint, superpoint-open)")
    export_onnx(net, output, opset)
    names = ", ".join(net.dense_output_names)
    click.echo(f"wrote {output}: image (B, {net.input_channels}, H, W) -> {names}")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).name)


def _progress(items):
    if len(items) > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=len(items), desc="detect", unit="img", file=sys.stderr)
    return None


def _detect_chunk(detect_features, chunk, net, resize, max_pixels):
    """(image, (features, ms per image)) for a chunk of images in one call; when an image of
    the chunk is bad, each image alone, so the others still get their results and the bad one
    its error (a KeypointsError in place of the result)."""
    start = time.perf_counter()
    try:
        features = detect_features(
            chunk, net, resize=resize, batch_size=len(chunk), max_pixels=max_pixels
        )
    except KeypointsError as exc:
        if len(chunk) == 1:
            return [(chunk[0], exc)]
        return [
            pair
            for image in chunk
            for pair in _detect_chunk(detect_features, [image], net, resize, max_pixels)
        ]
    ms = (time.perf_counter() - start) * 1000 / len(chunk)
    return [(image, (f, ms)) for image, f in zip(chunk, features)]


def _write_outputs(image, results, outdir, stems, fmt, compare, no_plot) -> None:
    """``<stem>[.<model>].npz|json`` per model and the plot (one panel per model)."""
    from .io import save_features

    stem = _unique_stem(Path(image).stem, stems)
    for name, (features, _) in results.items():
        suffix = f".{_safe(name)}" if compare else ""
        save_features(features, outdir / f"{stem}{suffix}.{fmt}", fmt)
    if no_plot:
        return
    import matplotlib.pyplot as plt

    from .viz import plot_keypoints

    fig, axes = plt.subplots(1, len(results), figsize=(6.4 * len(results), 5.2))
    for ax, (name, (features, _)) in zip(np.atleast_1d(axes), results.items()):
        plot_keypoints(image, features, ax=ax, title=f"{name}: {len(features)} keypoints")
    fig.suptitle(Path(image).name)
    fig.tight_layout()
    _save_figure(fig, outdir / f"{stem}{'_compare' if compare else ''}.png")
    plt.close(fig)


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def _save_figure(fig, path: Path) -> None:
    from .io import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _print_table(header, rows) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    click.echo(line)
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``keypoints`` command; returns (and exits with) the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("KEYPOINTS_DEBUG"))
    try:
        cli.main(args=argv, prog_name="keypoints", standalone_mode=False)
        code = 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("keypoints: aborted", err=True)
        code = 130
    except (KeypointsError, ConfigError) as exc:
        click.echo(f"keypoints: error: {exc}", err=True)
        code = EXIT_USER_ERROR
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_UNEXPECTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if debug:
            traceback.print_exc()
        click.echo(
            f"keypoints: unexpected error: {type(exc).__name__}: {exc} "
            "(run `keypoints --debug ...` for the traceback, and please report it)",
            err=True,
        )
        code = EXIT_UNEXPECTED
    return code


if __name__ == "__main__":
    sys.exit(main())
