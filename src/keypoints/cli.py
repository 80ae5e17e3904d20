"""The ``keypoints`` command line: a thin layer over :func:`keypoints.detect` and friends.

Errors a user can cause end in one line on stderr and exit code 2; anything unexpected gives
exit code 1 and a pointer to ``--debug`` for the traceback.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import click

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="keypoints")
@click.option("--debug", is_flag=True, help="Show full tracebacks for unexpected errors.")
def cli(debug: bool) -> None:
    """Learned keypoint detection and description (SuperPoint in plain PyTorch).

    Keypoints are (x, y) in original-image pixels, pixel centres at integers.
    """


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "-m",
    "--model",
    default="superpoint",
    show_default=True,
    help="Model name, checkpoint path (.pth/.safetensors/Hub-layout folder) or Hub id. "
    "'superpoint' downloads magic-leap-community/superpoint from the Hugging Face Hub "
    "on first use.",
)
@click.option(
    "--max-keypoints", type=int, help="Keep the N best keypoints (-1: all). [model default: -1]"
)
@click.option(
    "--threshold", type=float, help="Detection threshold in [0, 1]. [model default: 0.005]"
)
@click.option(
    "--nms-radius", type=int, help="Non-maximum suppression radius in pixels. [model default: 4]"
)
@click.option(
    "--resize",
    default="1024",
    show_default=True,
    callback=_parse_resize,
    help="Longest side in pixels (never upsamples), WIDTHxHEIGHT, or 'none' for native resolution.",
)
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
@click.option("--no-plot", is_flag=True, help="Do not write the <stem>.png plots.")
@click.option("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu).")
def detect(
    images, model, max_keypoints, threshold, nms_radius, resize, outdir, fmt, no_plot, device
):
    """Detect keypoints in IMAGE... and write one plot and one result file per image."""
    from huggingface_hub.utils import logging as hf_logging

    from .detection import detect as detect_features
    from .io import save_features
    from .models.registry import load_model

    hf_logging.set_verbosity_error()  # our one-line message replaces the Hub's retry chatter
    options = {"max_keypoints": max_keypoints, "threshold": threshold, "nms_radius": nms_radius}
    options = {k: v for k, v in options.items() if v is not None}
    net = load_model(model, device)  # weights problems stop here, before any image
    net.config.replace(**options)  # so do bad options
    if not no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .viz import plot_keypoints

    outdir = Path(outdir)
    rows, failures, stems = [], [], set()
    progress = _progress(images)
    for image in progress:
        start = time.perf_counter()
        try:
            features = detect_features(image, net, resize=resize, **options)[0]
            elapsed = (time.perf_counter() - start) * 1000
            stem = _unique_stem(Path(image).stem, stems)
            save_features(features, outdir / f"{stem}.{fmt}", fmt)
            if not no_plot:
                fig = plot_keypoints(
                    image, features, title=f"{Path(image).name}: {len(features)} keypoints"
                )
                _save_figure(fig, outdir / f"{stem}.png")
                plt.close(fig)
        except KeypointsError as exc:
            failures.append((image, str(exc)))
            click.echo(f"keypoints: error: {exc}", err=True)
            continue
        width, height = features.image_size
        rows.append((image, f"{width}x{height}", str(len(features)), f"{elapsed:.0f}"))
    if rows:
        _print_table(("image", "size", "keypoints", "ms"), rows)
        click.echo(f"wrote {len(rows)} result(s) to {outdir}/")
    if failures:
        click.echo(f"keypoints: {len(failures)} of {len(images)} image(s) failed", err=True)
        sys.exit(EXIT_USER_ERROR)


def _progress(items):
    if len(items) > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, desc="detect", unit="img", file=sys.stderr)
    return items


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
