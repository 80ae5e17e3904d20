"""``keypoints match``: match two images, verify, and draw the matches."""

from __future__ import annotations

from pathlib import Path

import click

from ..pair import match_images
from ..viz import save_figure
from .options import (
    backend_option,
    device_option,
    estimator_option,
    load_matcher_weights,
    matcher_option,
    matcher_weights_option,
    model_option,
    pipeline,
    precision_option,
    preset_option,
    ransac_option,
    resize_option,
    rotation_option,
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
@estimator_option
@ransac_option
@rotation_option
@click.option("-o", "--output", default="matches.png", show_default=True,
              type=click.Path(dir_okay=False),
              help="Picture of the matches (inliers green, outliers red): .png, .jpg, .pdf "
              "or .svg.")  # fmt: skip
@click.option(
    "--save",
    "save_path",
    type=click.Path(dir_okay=False),
    help="Also save the results (keypoints, matches, scores, the fitted matrix and its "
    "inliers) as .npz, .json or .h5 (keypoints.io.load_matches reads them).",
)
@device_option
@backend_option
@precision_option
def match_command(image0, image1, model, preset, max_keypoints, threshold, resize, ratio,
                  max_distance, matcher, matcher_weights, verify_model, estimator,
                  ransac_threshold, rotation, output, save_path, device, backend,
                  precision):  # fmt: skip
    """Match two images, draw the matches and optionally save them."""
    import matplotlib

    from ..io.results import match_format, save_matches
    from ..viz import figure_format

    figure_format(output)  # both names checked before any work
    if save_path is not None:
        match_format(save_path)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import plot_matches

    chosen = pipeline(preset, model, {"max_keypoints": max_keypoints, "threshold": threshold},
                      resize, matcher, {"ratio": ratio, "max_distance": max_distance})  # fmt: skip
    result = match_images(image0, image1, chosen, geometry=verify_model, estimator=estimator,
                        ransac_threshold=ransac_threshold, rotation=rotation,
                        matcher_weights=load_matcher_weights(matcher_weights), device=device,
                        backend=backend, precision=precision)  # fmt: skip
    f0, f1, matches, fit_result = (result.features0, result.features1, result.matches,
                                   result.verification)  # fmt: skip
    if result.rotation is not None:
        click.echo(f"rotation: image1 turned by {result.rotation} degrees (inliers per turn: "
                   f"{', '.join(map(str, result.rotation_inliers))})")  # fmt: skip
    click.echo(f"keypoints: {len(f0)} in {image0}, {len(f1)} in {image1}")
    method = "LightGlue" if matches.method == "lightglue" else "mutual nearest neighbour"
    click.echo(f"matches: {len(matches)} ({method})")
    if fit_result is not None:
        note = f" ({fit_result.message})" if fit_result.message else ""
        click.echo(f"inliers ({fit_result.model}, {estimator} {ransac_threshold} px): "
                   f"{fit_result.num_inliers}{note}")  # fmt: skip
    inliers = None if fit_result is None else fit_result.inliers
    fig = plot_matches(image0, image1, f0, f1, matches, inliers)
    save_figure(fig, Path(output))
    plt.close(fig)
    click.echo(f"wrote {output}")
    if save_path is not None:
        save_matches(save_path, f0, f1, matches, fit_result, names=(image0, image1))
        click.echo(f"wrote {save_path}")
