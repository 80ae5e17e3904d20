"""``keypoints download``: fill the caches an offline run reads.

A layer over :func:`keypoints.offline.download`.
"""

from __future__ import annotations

import json
import sys

import click

from ..models.weights import cache_dir
from ..offline import DATASETS, download, hub_cache_dir

EXIT_USER_ERROR = 2

_STATUS = {
    "bundled": "bundled, nothing to download",
    "cached": "cached",
    "downloaded": "downloaded",
    "missing": "missing (not downloaded)",
}

_EPILOG = (
    "\b\nExamples:\n"
    "  keypoints download superpoint-lightglue disk-lightglue\n"
    "  keypoints download --all\n"
    "  keypoints download --list\n"
    "\n"
    "Hub files go to huggingface_hub's cache (HF_HOME, HF_HUB_CACHE), release files to "
    "keypoints' cache (KEYPOINTS_CACHE, else ~/.cache/keypoints); copy both to the offline "
    "machine (or fill them there through a proxy) and run with HF_HUB_OFFLINE=1.\n"
    "\n"
    "\b\nDatasets for `keypoints eval homography` (not downloaded; see --datasets):\n"
    + "\n".join(f"  {d.name.split(' (')[0]}: {d.home}\n    {d.download}" for d in DATASETS.values())
)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A text table, columns padded to their widest cell but the last (it may be long)."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]

    def line(cells) -> str:
        return "  ".join([*(c.ljust(w) for c, w in zip(cells, widths)), cells[-1]])

    click.echo(line(header))
    click.echo(line(["-" * w for w in widths] + ["-" * len(header[-1])]))
    for row in rows:
        click.echo(line(row))


def _print_datasets() -> None:
    for key, d in DATASETS.items():
        click.echo(f"{key}: {d.name}")
        click.echo(f"  home:     {d.home}")
        click.echo(f"  download: {d.download}")
        click.echo(f"  layout:   {d.layout}")
        click.echo("  commands:")
        for line in d.example.splitlines():
            click.echo(f"    {line}")
        click.echo("")


def _quiet_hub_bars():
    """Switch off huggingface_hub's progress bars under ``-q``; returns how to switch them back."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    from .options import VERBOSITY

    if VERBOSITY["level"] >= 0 or are_progress_bars_disabled():
        return lambda: None
    disable_progress_bars()
    return enable_progress_bars


@click.command("download", epilog=_EPILOG)
@click.argument("names", nargs=-1, metavar="[MODEL|PRESET]...")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every detector's weights and every LightGlue weights (so every preset).",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Show what the names (default: all) need and where it is; download nothing.",
)
@click.option(
    "--datasets",
    is_flag=True,
    help="Where the evaluation datasets come from and the layout `keypoints eval "
    "homography` reads.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def download_command(names, everything, list_only, datasets, as_json):  # fmt: skip
    """Fill the caches a later offline run reads, and print where each file is.

    MODEL|PRESET: detectors (`keypoints models`: their weights), presets (`keypoints presets`:
    the detector's and the matcher's LightGlue weights), lightglue:NAME (LightGlue weights:
    superpoint, disk, aliked, sift, doghardnet, xfeat-lighterglue) or Hub ids (namespace/name).
    Unknown names stop everything before any download; a failed download is reported and the
    others go on (exit code 2 at the end).
    """
    if datasets:
        _print_datasets()
        if not (names or everything or list_only):
            return
    if names and everything:
        raise click.UsageError("give names or --all, not both")
    if not (names or everything or list_only):
        raise click.UsageError("give MODEL or PRESET names, --all, --list or --datasets")
    restore = _quiet_hub_bars()
    try:
        results = download(list(names) if names else None, fetch=not list_only)
    finally:
        restore()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        rows = [
            (r.name, r.what, "-" if r.path is None else str(r.path),
             f"failed: {r.reason}" if r.failed else _STATUS[r.status])
            for r in results
        ]  # fmt: skip
        _table(("name", "what", "where", "status"), rows)
        click.echo("")
        click.echo(f"Hub files: {hub_cache_dir()} (HF_HOME, HF_HUB_CACHE)")
        click.echo(f"release files: {cache_dir()} (KEYPOINTS_CACHE)")
    failed = {r.what for r in results if r.failed}  # a part two names share counts once
    if failed:
        total = len({r.what for r in results})
        click.echo(f"keypoints: {len(failed)} of {total} download(s) failed", err=True)
        sys.exit(EXIT_USER_ERROR)
