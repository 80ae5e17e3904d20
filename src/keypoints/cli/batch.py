"""The batch commands: ``extract``, ``pairs``, ``match-pairs`` and ``colmap``.

``extract`` (features of many images into one file), ``pairs``, ``match-pairs`` (matches of many
pairs into one file) and ``colmap`` (a COLMAP database).
"""

from __future__ import annotations

import sys

import click

from ..defaults import (
    DEFAULT_MATCH_BATCH_SIZE,
    DEFAULT_MATCH_SHARD_SIZE,
    DEFAULT_SHARD_SIZE,
    DEFAULT_WORKERS,
    ENGINES,
)
from ..errors import ConfigError
from ..models.registry import load_model
from .options import (
    backend_option,
    detector_options,
    device_option,
    given,
    load_matcher_weights,
    matcher_option,
    matcher_weights_option,
    max_pixels_option,
    model_option,
    pipeline,
    precision_option,
    preset_option,
    progress_enabled,
    resize_option,
)

EXIT_USER_ERROR = 2


@click.command()
@click.argument("images")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The HDF5 file (hloc's layout). Images already in it are skipped.",
)
@model_option()
@preset_option
@detector_options
@resize_option()
@click.option("--half-descriptors", is_flag=True, help="Store descriptors as float16.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Background threads decoding and resizing images while the model computes "
    "(with --engine ray: model actors).",
)
@click.option("--overwrite", is_flag=True, help="Recompute images already in the output.")
@device_option
@backend_option
@precision_option
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=DEFAULT_SHARD_SIZE,
    show_default=True,
    help="Images per shard (a kill loses at most one shard of work).",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help='ray: a Ray Data pipeline (`pip install "keypoints[ray]"`), --workers '
    "model actors, the detector shipped to them with its weights.",
)
@max_pixels_option
@click.option(
    "--address",
    default=None,
    help="Ray cluster address (default: RAY_ADDRESS, else a local Ray instance).",
)
def extract(images, output, model, preset, max_keypoints, threshold, nms_radius, resize,
            half_descriptors, workers, overwrite, device, backend, precision, shard_size,
            engine, max_pixels, address):  # fmt: skip
    """Extract features of IMAGES into one HDF5 file that hloc reads.

    IMAGES is a folder, searched recursively, or a text file of paths. Resumable: rerun the same
    command after an interruption and it finishes the job.
    """
    from ..pipeline.extract import extract_report

    options = {"max_keypoints": max_keypoints, "threshold": threshold, "nms_radius": nms_radius}
    chosen = pipeline(preset, model, options, resize)
    net = load_model(chosen.detector, device, backend, precision, **chosen.options)
    report = extract_report(
        images, output, net, resize=chosen.resize, half_descriptors=half_descriptors,
        workers=workers, overwrite=overwrite, shard_size=shard_size, max_pixels=max_pixels,
        progress=progress_enabled(), engine=engine, address=address,
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


_exhaustive_option = click.option("--exhaustive", is_flag=True, help="Every pair of images.")
_sequential_option = click.option(
    "--sequential", type=int, metavar="K", help="Each image with the K next ones."
)


@click.command("pairs")
@click.argument("source")
@_exhaustive_option
@_sequential_option
@click.option("--retrieval", type=click.IntRange(min=1), metavar="K",
              help="Each image with its K most similar ones (VLAD of the local descriptors; "
              "SOURCE must be a features .h5).")  # fmt: skip
@click.option("--gps", type=click.FloatRange(min=0, min_open=True), metavar="RADIUS_M",
              help="Every pair of images taken within RADIUS_M metres (EXIF GPS; SOURCE must "
              "be the images).")  # fmt: skip
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Text file, one 'name0 name1' per line (hloc's format).")  # fmt: skip
def pairs_command(source, exhaustive, sequential, retrieval, gps, output):
    """Write the image pairs of SOURCE (features .h5, image folder or list of paths)."""
    from ..pipeline.pairs import pairs_from, write_pairs

    pairs = pairs_from(source, None, exhaustive, sequential, retrieval, gps=gps,
                       from_file=False, progress=progress_enabled())  # fmt: skip
    write_pairs(pairs, output)
    click.echo(f"wrote {len(pairs)} pairs to {output}")


@click.command("match-pairs")
@click.argument("features", type=click.Path(dir_okay=False))
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False),
              help="Text file of pairs, one 'name0 name1' per line.")  # fmt: skip
@_exhaustive_option
@_sequential_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The matches .h5 (hloc's layout); pairs already in it are skipped.")  # fmt: skip
@preset_option
@click.option("--ratio", type=float, help="Lowe's ratio test threshold, in (0, 1].")
@click.option("--max-distance", type=float, help="Drop matches farther than this.")
@matcher_option
@matcher_weights_option
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_MATCH_BATCH_SIZE,
              show_default=True, help="Pairs per LightGlue forward pass.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Recompute pairs already in the output.")
@device_option
@precision_option
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help='ray: blocks of pairs matched by --workers Ray actors (`pip install '
              '"keypoints[ray]"`), LightGlue shipped to them with its weights.')  # fmt: skip
@click.option("--address", default=None, help="With --engine ray: the cluster "
              "(default: RAY_ADDRESS, else a local Ray).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS,
              show_default=True, help="With --engine ray: matcher actors.")  # fmt: skip
@click.option("--shard-size", type=click.IntRange(min=1), default=DEFAULT_MATCH_SHARD_SIZE,
              show_default=True,
              help="Pairs per block and shard file (a kill loses at most one block of work "
              "per worker; the rerun resumes).")  # fmt: skip
def match_pairs_command(features, pairs_file, exhaustive, sequential, output, preset, ratio,
                        max_distance, matcher, matcher_weights, batch_size, overwrite, device,
                        precision, engine, address, workers, shard_size):  # fmt: skip
    """Match image pairs of FEATURES by mutual nearest neighbour or LightGlue into OUTPUT.

    FEATURES comes from `keypoints extract`; OUTPUT is in hloc's matches layout. Resumable:
    rerun the same command after an interruption and it finishes the job.
    """
    from ..pipeline.match_pairs import match_pairs
    from ..pipeline.pairs import pairs_from

    detector = _features_detector(features, preset)
    chosen = pipeline(preset, detector, {}, matcher=matcher,
                      matcher_options={"ratio": ratio, "max_distance": max_distance})  # fmt: skip
    pairs = pairs_from(features, pairs_file, exhaustive, sequential)
    _, matched, skipped = match_pairs(
        features, pairs, output, method=chosen.matcher, overwrite=overwrite,
        progress=progress_enabled(), batch_size=batch_size, precision=precision, device=device,
        engine=engine, address=address, workers=workers, shard_size=shard_size,
        **given(matcher=load_matcher_weights(matcher_weights)), **chosen.matcher_options,
    )  # fmt: skip
    click.echo(f"matched {matched} pair(s), skipped {skipped} already in {output}")


def _features_detector(features: str, preset: str | None) -> str | None:
    """With a preset, the detector the features file records (which must be the preset's)."""
    if preset is None:
        return None
    from ..pipeline.settings import read_settings
    from ..presets import load_preset

    expected = load_preset(preset).detector
    try:
        settings = read_settings(features)
    except OSError:
        return None  # match_pairs says what is wrong with the file
    if settings is not None and settings.model != expected:
        raise ConfigError(
            f"{features} holds {settings.model} features; preset {preset} is for {expected}"
        )
    return expected


@click.command("colmap")
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
    """Import FEATURES and MATCHES (hloc layout) into a COLMAP database.

    The database is for pycolmap.incremental_mapping (needs `pip install "keypoints[colmap]"`).
    """
    from ..io.colmap import import_colmap
    from ..pipeline.pairs import read_pairs

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
