"""Options shared by the commands, their defaults, and how ``--preset`` combines with them.

The defaults come from :mod:`keypoints.defaults`; a ``--preset`` combines with options given
explicitly as explicit > preset > default.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

import click

from ..defaults import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_ESTIMATOR,
    DEFAULT_MATCHER,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_RANSAC_THRESHOLD,
    DEFAULT_RESIZE,
    DEFAULT_ROTATION,
    ESTIMATORS,
    GEOMETRIC_MODELS,
    MATCHERS,
    PRECISIONS,
    ROTATIONS,
)
from ..errors import ConfigError
from ..image import normalize_resize
from ..presets import PRESETS, UNSET, compose
from ..presets import given as given  # re-exported for the commands

#: The pipeline a command runs (the preset with the options given explicitly on top).
pipeline = compose


def parse_resize(ctx, param, value: str | None):
    """``1024`` (longest side), ``640x480`` (width x height) or ``none`` (native resolution)."""
    if value is None:
        return UNSET
    try:  # the Python API's parser: "640x480" is a Size(height=480, width=640)
        return normalize_resize(value)
    except ConfigError:
        raise click.BadParameter(
            f"{value!r}: use a longest side (1024), WIDTHxHEIGHT (640x480) or 'none' for native"
        ) from None


def resize_option(default: int | None = DEFAULT_RESIZE):
    """``--resize``; when absent: the preset's, else ``default``."""
    shown = "none" if default is None else str(default)
    return click.option(
        "--resize",
        callback=parse_resize,
        help="Longest side in pixels (never upsamples), WIDTHxHEIGHT, or 'none' for native "
        f"resolution. [default: the preset's, else {shown}]",
    )


def model_option(help_text: str = "Detector: a name (see `keypoints models`), a checkpoint "
                 "(.pth/.safetensors/Hub-layout folder) or a Hub id."):  # fmt: skip
    """``-m/--model`` (default: the preset's detector, else the default model)."""
    return click.option(
        "-m", "--model", default=None, help=f"{help_text} [default: {DEFAULT_MODEL}]"
    )


preset_option = click.option(
    "--preset",
    default=None,
    metavar="NAME",
    help=f"A named pipeline (see `keypoints presets`): {', '.join(PRESETS)}. Options given "
    "explicitly override it.",
)

backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="Run the dense network with torch or onnxruntime (auto: onnxruntime when installed).",
)

precision_option = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="fast: each part's fastest measured mode (SuperPoint int8 in onnxruntime; others and "
    "LightGlue bf16 where the CPU has it); bf16 / int8 explicitly; fp32: parity. Accuracy "
    "cost: docs/speed.md.",
)

max_pixels_option = click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse images with more pixels (Pillow's decompression-bomb limit by default).",
)

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="torch device: auto (cuda when a GPU is visible, else cpu), cpu, cuda, cuda:1, mps.",
)

threshold_option = click.option(
    "--threshold", type=float, help="Detection threshold in [0, 1] (model default)."
)

matcher_option = click.option(
    "--matcher",
    type=click.Choice(MATCHERS),
    default=None,
    help="auto: LightGlue when weights trained on the detector's features are available offline "
    "(bundled: aliked-n16(rot), xfeat; or cached), else mutual nearest neighbour (mnn); lightglue: "
    "those weights (cvg's releases are downloaded once, then cached). [default: the preset's, "
    f"else {DEFAULT_MATCHER}; mnn when --ratio or --max-distance is given]",
)

matcher_weights_option = click.option(
    "--matcher-weights",
    help="Other LightGlue weights: a name (superpoint, aliked, sift, disk, doghardnet, "
    "xfeat-lighterglue), a checkpoint, or a transformers Hub id or folder.",
)

ransac_option = click.option(
    "--ransac-threshold",
    type=float,
    default=DEFAULT_RANSAC_THRESHOLD,
    show_default=True,
    help="The robust estimator's inlier threshold in pixels.",
)

estimator_option = click.option(
    "--estimator",
    type=click.Choice(ESTIMATORS),
    default=DEFAULT_ESTIMATOR,
    show_default=True,
    help="Robust estimator: PoseLib's LO-RANSAC or OpenCV's USAC MAGSAC++.",
)

rotation_option = click.option(
    "--rotation",
    type=click.Choice(ROTATIONS),
    default=DEFAULT_ROTATION,
    show_default=True,
    help="auto: also try the second image at 90, 180 and 270 degrees and keep the turn with the "
    "most inliers (upright learned detectors only; stops at a clearly right turn, so an upright "
    "pair costs nothing more and a turned one up to 4x).",
)

verify_option = click.option(
    "--verify",
    "verify_model",
    type=click.Choice(list(GEOMETRIC_MODELS)),
    help="Fit a model with the robust estimator and count inliers.",
)


def detector_options(command: Callable) -> Callable:
    """--max-keypoints, --threshold and --nms-radius, the options every detector shares."""
    command = click.option(
        "--nms-radius", type=int, help="Non-maximum suppression radius (model default)."
    )(command)
    command = threshold_option(command)
    return click.option("--max-keypoints", type=int, help="Keep the N best keypoints (-1: all).")(
        command
    )


def load_matcher_weights(text: str | None):
    """``--matcher-weights``: a release name or checkpoint file, or a transformers Hub id or folder.

    A release name or checkpoint file is returned as it is; a transformers Hub id or folder is
    loaded with :class:`keypoints.hf.LightGlueForKeypointMatching`.
    """
    if text is None:
        return None
    from ..models.lightglue import WEIGHT_NAMES
    from ..models.weights import looks_like_hub_id

    if text in WEIGHT_NAMES or os.path.isfile(text):
        return text
    if os.path.isdir(text) or looks_like_hub_id(text):
        from ..hf import LightGlueForKeypointMatching

        return LightGlueForKeypointMatching.from_pretrained(text)
    return text  # LightGlue.from_pretrained says what is wrong with it


_SHOWWARNING = warnings.showwarning

#: The verbosity the command line was given: -1 (``-q``), 0, or 1 (``-v``).
VERBOSITY = {"level": 0}


def progress_enabled() -> bool:
    """Progress bars go to stderr, only when it is a terminal and ``-q`` was not given."""
    return sys.stderr.isatty() and VERBOSITY["level"] >= 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``keypoints: warning: <message>`` (no file, line or class names)."""
    click.echo(f"keypoints: warning: {message}", err=True)


def set_verbosity(level: int) -> None:
    """Apply a verbosity to warnings, progress bars and logging.

    ``-q`` (-1): no warnings, no progress bars; default (0): warnings as one line; ``-v`` (1):
    Python's full warnings and INFO logging from keypoints.
    """
    import logging

    VERBOSITY["level"] = level
    if level < 0:
        warnings.simplefilter("ignore")
    elif level == 0:
        warnings.showwarning = _one_line_warning
    else:
        warnings.showwarning = _SHOWWARNING
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
        logging.getLogger("keypoints").setLevel(logging.INFO)


def _verbosity_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        set_verbosity(-1 if param.name == "quiet" else 1)


def add_verbosity_options(command: click.Command) -> None:
    """Give ``command`` (and a group's subcommands) ``-q/--quiet`` and ``-v/--verbose``."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_verbosity_options(sub)
        return
    command.params += [
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True,
                     callback=_verbosity_callback,
                     help="No warnings and no progress bars; errors still print."),
        click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                     callback=_verbosity_callback,
                     help="Full warnings (with where they come from) and progress logging."),
    ]  # fmt: skip


def print_table(header, rows) -> None:
    """A plain text table, columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
