"""``keypoints match``: match two images, verify, and draw the matches."""

from __future__ import annotations

from pathlib import Path

import click

from ..detection import detect
from ..matching import verify
from ..models.registry import load_model
from .options import (
    backend_option,
    given,
    load_matcher_weights,
    matcher_option,
    matcher_weights_option,
    model_option,
    pipeline,
    precision_option,
    preset_option,
    ransac_option,
    resize_option,
    save_figure,
    threshold_option,
    verify_option,
)


@click.command("match")
@click.argument("image0")
@click.argument("image1")
@model_option()
@preset_option
@click.option("--max-keypoints", type=int, help="Keep the N best keypoints per image.")
@threshold_option
@resize_option()
@click.option("--ratio", type=float, help="Lowe's ratio test, e.g. 0.8.")
@click.option("--max-distance", type=float, help="Drop matches with a larger descriptor distance.")
@matcher_option
@matcher_weights_option
@verify_option
@ransac_option
@click.option("-o", "--output", default="matches.png", show_default=True,
              type=click.Path(dir_okay=False),
              help="Picture of the matches (inliers green, outliers red).")  # fmt: skip
@backend_option
@precision_option
def match_command(image0, image1, model, preset, max_keypoints, threshold, resize, ratio,
                  max_distance, matcher, matcher_weights, verify_model, ransac_threshold, output,
                  backend, precision):  # fmt: skip
    """Match two images and draw the matches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import plot_matches

    chosen = pipeline(preset, model, {"max_keypoints": max_keypoints, "threshold": threshold},
                      resize, matcher, {"ratio": ratio, "max_distance": max_distance})  # fmt: skip
    net = load_model(chosen.detector, None, backend, precision, **chosen.options)
    f0, f1 = detect([image0, image1], net, resize=chosen.resize)
    extra = given(matcher=load_matcher_weights(matcher_weights))
    if chosen.matcher != "mnn":
        extra["precision"] = precision
    matches = chosen.match(f0, f1, **extra)
    fit = verify(f0, f1, matches, verify_model, ransac_threshold) if verify_model else None
    click.echo(f"keypoints: {len(f0)} in {image0}, {len(f1)} in {image1}")
    method = "LightGlue" if matches.method == "lightglue" else "mutual nearest neighbour"
    click.echo(f"matches: {len(matches)} ({method})")
    if fit is not None:
        note = f" ({fit.message})" if fit.message else ""
        click.echo(f"inliers ({verify_model}): {fit.num_inliers}{note}")
    fig = plot_matches(image0, image1, f0, f1, matches, None if fit is None else fit.inliers)
    save_figure(fig, Path(output))
    plt.close(fig)
    click.echo(f"wrote {output}")
