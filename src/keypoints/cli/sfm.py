"""``keypoints sfm``: a folder of photos to a COLMAP model in one command."""

from __future__ import annotations

import click

from ..defaults import DEFAULT_WORKERS, ENGINES
from .options import device_option, progress_enabled


@click.command("sfm")
@click.argument("images")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output folder: features.h5, pairs.txt, matches.h5, database.db, sparse/N/, "
              "model.png, registration.txt.")  # fmt: skip
@click.option("--preset", default=None, metavar="NAME",
              help="Detector + matcher (see `keypoints presets`). "
              "[default: aliked-lightglue]")  # fmt: skip
@click.option("--pairs", "pairs", default="auto", show_default=True,
              metavar="auto|exhaustive|sequential:K|retrieval:K",
              help="How images are paired: auto is exhaustive up to 100 images, else retrieval "
              "of the 20 most similar.")  # fmt: skip
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="ray: extraction and matching on Ray "
              "(`pip install \"keypoints[ray]\"`).")  # fmt: skip
@click.option("--address", default=None,
              help="Ray cluster address (default: RAY_ADDRESS, else a local Ray "
              "instance).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=0), default=DEFAULT_WORKERS, show_default=True,
              help="Decoding threads (local) or model actors (ray).")  # fmt: skip
@click.option("--single-camera", is_flag=True, help="One camera shared by all images.")
@click.option("--overwrite", is_flag=True, help="Rebuild every stage from scratch.")
@device_option
def sfm_command(images, output, preset, pairs, engine, address, workers, single_camera, overwrite,
                device):  # fmt: skip
    """Extract, pair, match, import into COLMAP and map IMAGES (a folder), resumably.

    Each stage is skipped when its output is current, so a rerun after a crash or with more
    photos does only the missing work. Needs pycolmap (`pip install "keypoints[colmap]"`).
    """
    from ..pipeline.sfm import DEFAULT_SFM_PRESET, sfm

    report = sfm(
        images, output, preset=preset or DEFAULT_SFM_PRESET, pairs=pairs, engine=engine,
        address=address, workers=workers, device=device, single_camera=single_camera,
        overwrite=overwrite, progress=progress_enabled(), log=click.echo,
    )  # fmt: skip
    for line in report.summary():
        click.echo(line)
    click.echo(f"wrote {report.output}/sparse, model.png, registration.txt")
