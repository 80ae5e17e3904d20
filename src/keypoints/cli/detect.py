"""``keypoints detect``: keypoints of images, one result file and one plot per image."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..defaults import DEFAULT_BATCH_SIZE
from ..errors import KeypointsError
from ..image import check_resize, to_array
from ..io import FORMATS, save_features
from ..models.registry import load_model
from ..pipeline.stream import detect_stream, reason
from ..viz import save_figure
from .options import (
    backend_option,
    detector_options,
    device_option,
    max_pixels_option,
    model_option,
    pipeline,
    precision_option,
    preset_option,
    print_table,
    resize_option,
)

EXIT_USER_ERROR = 2


@click.command()
@click.argument("images", nargs=-1, required=True)
@model_option(
    "Model name (see `keypoints models`), checkpoint path (.pth/.safetensors/Hub-layout "
    "folder) or Hub id. The default is bundled and works offline; 'superpoint' "
    "downloads magic-leap-community/superpoint from the Hugging Face Hub on first use."
)
@preset_option
@click.option(
    "--compare",
    default=None,
    metavar="M1,M2,...",
    help="Run several models and draw one panel per model in <stem>_compare.png "
    "(results go to <stem>.<model>.npz).",
)
@detector_options
@resize_option()
@click.option(
    "-o",
    "--output",
    "outdir",
    type=click.Path(file_okay=False),
    default="keypoints_out",
    show_default=True,
    help="Folder for <stem>.png (plot) and <stem>.npz/.json (keypoints, scores, "
    "descriptors, image_size, model, fingerprint).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="npz", show_default=True)
@click.option("--no-plot", is_flag=True, help="Do not write the plots.")
@device_option
@backend_option
@precision_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Images decoded at a time (same-size images share a forward pass), as in Python.",
)
@max_pixels_option
def detect(images, model, preset, compare, max_keypoints, threshold, nms_radius, resize, outdir,
           fmt, no_plot, device, backend, precision, batch_size, max_pixels):  # fmt: skip
    """Detect keypoints in IMAGE... and write one plot and one result file per image.

    An IMAGE that is a folder stands for the images in it (searched recursively, as extract
    does).
    """
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our one-line message replaces the Hub's retry chatter
    options = {"max_keypoints": max_keypoints, "threshold": threshold, "nms_radius": nms_radius}
    chosen = pipeline(preset, model, options, resize)
    names = [m.strip() for m in compare.split(",") if m.strip()] if compare else [chosen.detector]
    # weights and option problems stop here, before any image
    nets = {name: load_model(name, device, backend, precision, **chosen.options)
            for name in names}  # fmt: skip
    if not no_plot:
        import matplotlib

        matplotlib.use("Agg")
    images = _expand_folders(images)
    writer = _Writer(Path(outdir), fmt, bool(compare), no_plot)
    rows, failures = [], []
    progress = _progress(images)
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        found, errors = _detect_chunk(chunk, nets, chosen.resize, max_pixels, batch_size)
        for image in chunk:
            if progress is not None:
                progress.update(1)
            try:
                if image in errors:
                    raise errors[image]
                rows.extend(writer.write(image, found[image]))
            except (KeypointsError, OSError) as exc:  # this image; the others go on
                failures.append(image)
                click.echo(f"keypoints: error: {reason(exc)}", err=True)
    if progress is not None:
        progress.close()
    if rows:
        print_table(("image", "model", "size", "keypoints", "ms", "written to"), rows)
        click.echo(f"wrote {len(rows)} result(s) to {outdir}/")
    if failures:
        click.echo(f"keypoints: {len(failures)} of {len(images)} image(s) failed", err=True)
        sys.exit(EXIT_USER_ERROR)


def _detect_chunk(chunk, nets, resize, max_pixels, batch_size):
    """Per image of ``chunk``: ``{model: (features, ms)}``, or the first error of any model."""
    check_resize(resize, max_pixels)
    found: dict[str, dict] = {image: {} for image in chunk}
    errors: dict[str, KeypointsError] = {}
    for name, net in nets.items():
        stream = detect_stream(chunk, net, resize, batch_size=batch_size,
                               load=lambda x: to_array(x, max_pixels=max_pixels))  # fmt: skip
        for image, result, seconds in stream:
            if isinstance(result, KeypointsError):
                errors.setdefault(image, result)
            else:
                found[image][name] = (result, seconds * 1000)
    return found, errors


class _Writer:
    """``<stem>[.<model>].npz|json`` per model and the plot (one panel per model)."""

    def __init__(self, outdir: Path, fmt: str, compare: bool, no_plot: bool) -> None:
        self.outdir, self.fmt, self.compare, self.no_plot = outdir, fmt, compare, no_plot
        self.stems: set[str] = set()

    def write(self, image: str, results: dict) -> list[tuple]:
        """Write the files of ``image``; returns its table rows."""
        stem = _unique_stem(Path(image).stem, self.stems)  # two a.png -> a.npz, a_2.npz
        rows = []
        for name, (features, ms) in results.items():
            suffix = f".{_safe(name)}" if self.compare else ""
            path = self.outdir / f"{stem}{suffix}.{self.fmt}"
            save_features(features, path, self.fmt)
            width, height = features.image_size
            rows.append((image, name, f"{width}x{height}", str(len(features)), f"{ms:.0f}",
                         path.name))  # fmt: skip
        if not self.no_plot:
            self._plot(image, stem, results)
        return rows

    def _plot(self, image: str, stem: str, results: dict) -> None:
        import matplotlib.pyplot as plt

        from ..viz import plot_compare

        # one panel per model in a grid close to square, each titled with its model and count
        found = {name: features for name, (features, _) in results.items()}
        fig = plot_compare(image, found, title=Path(image).name)
        save_figure(fig, self.outdir / f"{stem}{'_compare' if self.compare else ''}.png")
        plt.close(fig)


def _expand_folders(images) -> list[str]:
    """The arguments with each folder replaced by its images (sorted, recursively)."""
    from ..pipeline.images import list_images

    out = []
    for image in images:
        if os.path.isdir(image):
            root, names = list_images(image)
            out.extend(str(root / name) for name in names)
        else:
            out.append(image)
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).name)


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def _progress(items):
    if len(items) > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=len(items), desc="detect", unit="img", file=sys.stderr)
    return None
