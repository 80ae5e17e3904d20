"""``keypoints eval homography``: compare detectors and presets on a homography dataset."""

from __future__ import annotations

import click

from ..defaults import DEFAULT_MATCHER, EVAL_MAX_KEYPOINTS, EVAL_MODELS
from ..presets import load_preset
from .options import (
    device_option,
    estimator_option,
    given,
    load_matcher_weights,
    matcher_option,
    matcher_weights_option,
    precision_option,
    progress_enabled,
    ransac_option,
    resize_option,
    rotation_option,
)


@click.group("eval")
def eval_group():
    """Evaluate detectors and matchers on benchmarks."""


@eval_group.command("homography")
@click.argument("dataset", type=click.Path())
@click.option("--models", default=None,
              help=f"Comma-separated models, run with the protocol below. [default: "
              f"{','.join(EVAL_MODELS)} unless --preset is given]")  # fmt: skip
@click.option(
    "--preset",
    "presets",
    default=None,
    metavar="P1,P2,...",
    help="Comma-separated presets (see `keypoints presets`), each run as defined.",
)
@click.option("--max-keypoints", type=int, default=EVAL_MAX_KEYPOINTS, show_default=True,
              help="Keypoints per image (top-k for learned models unless --threshold is "
              "given).")  # fmt: skip
@click.option("--threshold", type=float, default=None, help="Detection threshold instead of top-k.")
@resize_option(default=None)
@estimator_option
@ransac_option
@rotation_option
@click.option("-o", "--output", default="results", show_default=True,
              type=click.Path(file_okay=False),
              help="Folder for summary.md, metrics.json and mma.png.")  # fmt: skip
@matcher_option
@matcher_weights_option
@device_option
@precision_option
def eval_homography(dataset, models, presets, max_keypoints, threshold, resize, estimator,
                    ransac_threshold, rotation, output, matcher, matcher_weights, device,
                    precision):  # fmt: skip
    """Repeatability, MMA@1-10 px and homography accuracy/AUC on HPatches or Oxford affine."""
    from ..evaluation.datasets import load_dataset
    from ..evaluation.homography import (
        evaluate_homography,
        run_settings,
        settings_text,
        summary_table,
    )
    from .options import UNSET

    chosen = [load_preset(p.strip()) for p in (presets or "").split(",") if p.strip()]
    if models is None:
        models = "" if chosen else ",".join(EVAL_MODELS)
    names = [m.strip() for m in models.split(",") if m.strip()]
    resize = None if resize is UNSET else resize
    matcher = matcher or DEFAULT_MATCHER
    sequences = load_dataset(dataset)
    settings = run_settings(
        dataset, sequences, [*names, *chosen], max_keypoints=max_keypoints, threshold=threshold,
        resize=resize, matcher=matcher, matcher_weights=matcher_weights, estimator=estimator,
        ransac_threshold=ransac_threshold, rotation=rotation, precision=precision,
    )  # fmt: skip
    click.echo(f"settings: {settings_text(settings)}")
    results = evaluate_homography(
        dataset, [*names, *chosen], max_keypoints=max_keypoints, threshold=threshold,
        resize=resize, ransac_threshold=ransac_threshold, estimator=estimator, rotation=rotation,
        precision=precision, device=device, output=output, progress=progress_enabled(),
        matcher=matcher,
        **given(matcher_weights=load_matcher_weights(matcher_weights)),
    )  # fmt: skip
    click.echo(summary_table(results), nl=False)
    click.echo(f"wrote {output}/summary.md, {output}/metrics.json, {output}/mma.png")
