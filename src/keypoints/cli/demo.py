"""``keypoints demo``: start the web demo (Gradio) on this machine."""

from __future__ import annotations

import socket

import click

from ..errors import KeypointsError
from .options import max_pixels_option


def free_port(host: str, port: int) -> int:
    """``port`` when it can be listened on at ``host`` (0: a free port chosen by the system).

    Raises :class:`KeypointsError` naming the port when it is taken or the host is unknown.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
            return probe.getsockname()[1]
    except OSError as exc:
        if port and exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise KeypointsError(
                f"port {port} is in use on {host}; choose another with --port (0 picks a free one)"
            ) from None
        raise KeypointsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface of this machine).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True,
              help="Port to listen on (0: a free one).")  # fmt: skip
@click.option("--share", is_flag=True,
              help="Also make a temporary public link through Gradio's share servers (needs the "
              "network).")  # fmt: skip
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the browser.")
@max_pixels_option
def demo_command(host, port, share, open_browser, max_pixels):
    """Start a web page that matches two photos, offline on the bundled models.

    Needs the `[demo]` extra (Gradio). Upload or paste two images, or pick an example pair;
    the page shows keypoints, matches coloured by inlier/outlier and LightGlue score, the
    homography overlay, the numbers, and downloads. Stop it with Ctrl+C.
    """
    from ..demo import launch, require_gradio

    require_gradio()
    port = free_port(host, port)
    launch(host=host, port=port, share=share, max_pixels=max_pixels, open_browser=open_browser)
