"""``keypoints demo``: a local web page that matches two photos (Gradio, extra ``[demo]``).

:func:`launch` starts it; :func:`build_app` returns the :class:`gradio.Blocks` without starting
it (for a Hugging Face Space, see the repository's ``app.py``). The work behind the buttons is
plain Python in :mod:`keypoints.demo.handlers`, testable without a browser.
"""

from __future__ import annotations

import os

from ..defaults import DEFAULT_MAX_PIXELS
from ..errors import KeypointsError

__all__ = ["build_app", "launch", "require_gradio", "DEFAULT_PORT", "MAX_FILE_SIZE"]

#: Gradio's usual port.
DEFAULT_PORT = 7860
#: Uploads larger than this are refused by the server before any decoding.
MAX_FILE_SIZE = "50mb"


def require_gradio() -> None:
    """Raise :class:`KeypointsError` with the install command when Gradio is missing."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise KeypointsError(
            "the demo needs Gradio, which is not installed: pip install 'keypoints[demo]' "
            "(or pip install gradio)"
        ) from None


def build_app(max_pixels: int = DEFAULT_MAX_PIXELS, workdir: str | None = None):
    """The demo's :class:`gradio.Blocks`, not started (see :func:`keypoints.demo.app.build_app`)."""
    require_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage pings
    from .app import build_app as build

    return build(max_pixels, workdir)


def launch(  # noqa: PLR0913 - Gradio's launch options
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    share: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workdir: str | None = None,
    open_browser: bool = False,
    block: bool = True,
):
    """Start the demo's web server.

    Args:
        host: the address to listen on (``0.0.0.0`` for every interface).
        port: the port; 0 picks a free one.
        share: also open a temporary public link through Gradio's share servers (needs the
            network).
        max_pixels: the largest upload accepted, in pixels.
        workdir: where runs keep their pictures and downloads.
        open_browser: open the page in the default browser.
        block: keep serving until interrupted (False returns at once, the server running).

    Returns:
        The :class:`gradio.Blocks`, started; its ``local_url`` is the page's address.
    """
    from .app import CSS, QUEUE_SIZE, THEME

    app = build_app(max_pixels, workdir)
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port or None,
        share=share,
        inbrowser=open_browser,
        prevent_thread_lock=not block,
        max_file_size=MAX_FILE_SIZE,
        theme=THEME,
        css=CSS,
        ssr_mode=False,
        footer_links=[],
        quiet=False,
    )
    return app
