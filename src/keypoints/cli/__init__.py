"""The ``keypoints`` command line: a thin layer over :func:`keypoints.detect` and friends.

Errors a user can cause end in one line on stderr and exit code 2; anything unexpected gives
exit code 1 and a pointer to ``--debug`` for the traceback. Each command lives in its own
module and only parses options, calls the library and prints.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

import click

from .._version import __version__
from ..errors import KeypointsError, as_os_error, describe_os_error
from . import batch, demo, detect, download, evaluate, info, match, sfm
from .options import add_verbosity_options, set_verbosity

__all__ = ["cli", "main", "EXIT_USER_ERROR", "EXIT_UNEXPECTED"]

EXIT_USER_ERROR = 2
EXIT_UNEXPECTED = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="keypoints")
@click.option("--debug", is_flag=True, help="Show full tracebacks for unexpected errors.")
def cli(debug: bool) -> None:
    """Keypoint detection, description and matching: ALIKED, SuperPoint, SIFT, ORB, LightGlue.

    Keypoints are (x, y) in original-image pixels, pixel centres at integers.
    """


for command in (
    detect.detect,
    info.models,
    info.presets,
    match.match_command,
    evaluate.eval_group,
    batch.extract,
    batch.pairs_command,
    batch.match_pairs_command,
    batch.colmap_command,
    sfm.sfm_command,
    info.export_group,
    download.download_command,
    demo.demo_command,
):
    add_verbosity_options(command)
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``keypoints`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("KEYPOINTS_DEBUG"))
    try:
        with warnings.catch_warnings():  # what -q / -v change ends with the command
            set_verbosity(0)  # warnings as one line unless -q or -v says otherwise
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
    except KeypointsError as exc:
        click.echo(f"keypoints: error: {exc}", err=True)
        code = EXIT_USER_ERROR
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_UNEXPECTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if debug:
            traceback.print_exc()
        os_error = as_os_error(exc)  # the user's files and disks: full, read-only, long names
        if os_error is not None:
            click.echo(f"keypoints: error: {describe_os_error(os_error)}", err=True)
            return EXIT_USER_ERROR
        click.echo(
            f"keypoints: unexpected error: {type(exc).__name__}: {exc} "
            "(run `keypoints --debug ...` for the traceback, and please report it)",
            err=True,
        )
        code = EXIT_UNEXPECTED
    return code
