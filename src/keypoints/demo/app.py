"""The Gradio page of ``keypoints demo``: layout and wiring only; the work is in handlers.

Two images (upload, paste, or an example pair shipped with the package) feed two tabs: *Match*
(one pipeline: pictures, numbers, downloads) and *Compare* (several presets side by side). One
queue with one worker serves both tabs, so two users never run models at the same time.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import themes

from .._version import __version__
from ..defaults import (
    DEFAULT_MAX_PIXELS,
    ESTIMATORS,
    GEOMETRIC_MODELS,
    MATCHERS,
    ROTATIONS,
)
from ..models.registry import MODELS
from ..presets import PRESETS
from .handlers import (
    COMPARE_COLUMNS,
    CUSTOM,
    RESIZE_CHOICES,
    MatchSettings,
    preset_fields,
    run_compare,
    run_match,
)

__all__ = [
    "build_app",
    "numbers_html",
    "photo_input",
    "upload_path",
    "EXAMPLES",
    "THEME",
    "CSS",
    "QUEUE_SIZE",
]

EXAMPLES_DIR = Path(__file__).parent / "examples"
#: The example pairs: (label, image 1, image 2).
EXAMPLES = (
    ("cats, new viewpoint", "cats.jpg", "cats_warped.jpg"),
    ("cats, turned 90 degrees and zoomed out", "cats.jpg", "cats_turned.jpg"),
    ("kitchen, new viewpoint and darker", "kitchen.jpg", "kitchen_viewpoint.jpg"),
)
#: Requests that may wait in the queue; more are turned away with a message.
QUEUE_SIZE = 16

THEME = themes.Soft(primary_hue="teal", secondary_hue="amber", neutral_hue="slate")
CSS = """
.kp-header { display: flex; align-items: baseline; gap: 0.8rem; flex-wrap: wrap; }
.kp-header h1 { margin: 0; font-size: 1.9rem; }
.kp-header .kp-tag { color: var(--body-text-color-subdued); font-size: 1.05rem; }
#status { min-height: 2.2rem; }
#status.kp-error, #status .kp-error { color: var(--error-text-color); }
#command code { white-space: pre-wrap; word-break: break-all; }
footer { visibility: hidden; }
.kp-cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr));
            gap: 0.6rem; }
.kp-card { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
           padding: 0.6rem 0.8rem; background: var(--block-background-fill); }
.kp-title { font-size: 0.8rem; color: var(--body-text-color-subdued); }
.kp-value { font-size: 1.6rem; font-weight: 700; color: var(--color-accent); }
.kp-note { font-size: 0.75rem; color: var(--body-text-color-subdued); }
.kp-pipeline { margin-top: 0.5rem; font-size: 0.9rem; }
"""


def upload_path(payload) -> str | None:
    """The uploaded file's path from an image input's raw payload (or None).

    The buttons' events run with ``preprocess=False``: Gradio's Image would decode uploads with
    Pillow before the handler runs, so a corrupt file would fail inside Gradio with a bare
    "Error"; the handler decodes it and says what is wrong with it instead (not an image,
    truncated, too large).
    """
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "path", payload)


def photo_input(**kwargs) -> gr.Image:
    """An image upload (file or clipboard) whose events hand over the file's path."""
    return gr.Image(type="filepath", sources=["upload", "clipboard"], **kwargs)


def _detector_choices() -> list[tuple[str, str]]:
    return [
        (name if info.offline else f"{name} (downloads its weights)", name)
        for name, info in MODELS.items()
    ]


def _preset_choices() -> list[tuple[str, str]]:
    choices = [
        (name if preset.offline else f"{name} (downloads weights)", name)
        for name, preset in PRESETS.items()
    ]
    return [*choices, ("custom (the fields below)", CUSTOM)]


def _offline_presets() -> list[str]:
    return [name for name, preset in PRESETS.items() if preset.offline]


def _fill_from_preset(name: str):
    """The preset dropdown fills detector, matcher, max keypoints and resize."""
    if name == CUSTOM:
        return gr.update(), gr.update(), gr.update(), gr.update()
    fields = preset_fields(name)
    return (fields["detector"], fields["matcher"], fields["max_keypoints"], fields["resize"])


def numbers_html(view) -> str:
    """The Match tab's numbers: a card per count, then the per-stage times.

    Each value carries ``data-key`` (keypoints0, keypoints1, matches, inliers, seconds) so that
    tests read them from the page.
    """
    if not view.ok or not view.summary:
        return ""
    summary = view.summary
    seconds = summary["seconds"]

    def card(title: str, value, key: str, note: str = "") -> str:
        small = f'<div class="kp-note">{html.escape(note)}</div>' if note else ""
        return (
            f'<div class="kp-card"><div class="kp-title">{title}</div>'
            f'<div class="kp-value" data-key="{key}">{value}</div>{small}</div>'
        )

    inliers = summary["inliers"]
    share = f"{inliers / summary['matches']:.1%} of the matches" if summary["matches"] else ""
    model = f"{summary['model']}, {summary['estimator']} {summary['ransac_threshold']:g} px"
    total = sum(seconds.values())
    cards = [
        card("Keypoints, image 1", summary["keypoints0"], "keypoints0"),
        card("Keypoints, image 2", summary["keypoints1"], "keypoints1"),
        card("Matches", summary["matches"], "matches", summary["matcher"]),
        card("Inliers", inliers, "inliers", f"{share} ({model})"),
        card(
            "Seconds",
            f"{total:.2f}",
            "seconds",
            " + ".join(f"{stage} {value:.2f}" for stage, value in seconds.items()),
        ),
    ]
    turned = summary["rotation"]
    extra = "" if turned in (None, 0) else f" Image 2 was matched turned by {turned} degrees."
    return (
        f'<div class="kp-cards">{"".join(cards)}</div>'
        f'<p class="kp-pipeline">Pipeline: {html.escape(summary["pipeline"])} '
        f"({html.escape(summary['detector'])} + {html.escape(summary['matcher'])})."
        f"{extra}</p>"
    )


def _header() -> str:
    return (
        '<div class="kp-header"><h1>keypoints</h1><span class="kp-tag">match two photos with '
        "ALIKED, DISK, XFeat, SIFT, ORB and LightGlue, on your own machine</span></div>"
        f"<p>Version {__version__}. Everything runs locally on the bundled weights, with no "
        "network: pick an example pair or drop in two photos of the same scene, then "
        "<b>Match</b>. Keypoints are (x, y) in original-image pixels, pixel centres at "
        "integers.</p>"
    )


def build_app(max_pixels: int = DEFAULT_MAX_PIXELS, workdir: str | None = None) -> gr.Blocks:
    """The demo's :class:`gradio.Blocks` (not launched; see :func:`keypoints.demo.launch`).

    Args:
        max_pixels: the largest upload accepted, in pixels.
        workdir: where runs keep their pictures and downloads (default: a ``keypoints-demo``
            folder in the system's temporary folder).

    Returns:
        The app; its two buttons share one queue with one worker.
    """
    default = MatchSettings()
    with gr.Blocks(title="keypoints: match two photos", analytics_enabled=False) as app:
        gr.HTML(_header())
        with gr.Row(equal_height=True):
            image0 = photo_input(label="Image 1", height=340, elem_id="image0")
            image1 = photo_input(label="Image 2", height=340, elem_id="image1")
        gr.Examples(
            examples=[[str(EXAMPLES_DIR / a), str(EXAMPLES_DIR / b)] for _, a, b in EXAMPLES],
            example_labels=[label for label, _, _ in EXAMPLES],
            inputs=[image0, image1],
            label="Example pairs (COCO photos, CC BY, with a known transformation)",
            elem_id="examples",
        )
        with gr.Tabs():
            with gr.Tab("Match", id="match"):
                match_inputs = _match_tab(image0, image1, default)
            with gr.Tab("Compare presets", id="compare"):
                _compare_tab(image0, image1, match_inputs, max_pixels, workdir)
        _wire_match(image0, image1, match_inputs, max_pixels, workdir)
    return app


def _match_tab(image0, image1, default: MatchSettings) -> dict[str, Any]:
    """The Match tab's fields, button and outputs (wired by :func:`_wire_match`)."""
    parts: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            parts["button"] = gr.Button("Match", variant="primary", elem_id="match-button")
            parts["preset"] = gr.Dropdown(
                _preset_choices(), value=default.preset, label="Preset", elem_id="preset"
            )
            parts["detector"] = gr.Dropdown(
                _detector_choices(), value=default.detector, label="Detector", elem_id="detector"
            )
            parts["matcher"] = gr.Radio(
                list(MATCHERS),
                value=default.matcher,
                label="Matcher",
                info="auto: LightGlue when its weights are at hand",
            )
            parts["max_keypoints"] = gr.Slider(
                64, 8192, value=default.max_keypoints, step=64, label="Max keypoints per image"
            )
            parts["resize"] = gr.Dropdown(
                list(RESIZE_CHOICES),
                value=default.resize,
                allow_custom_value=True,
                label="Resize (longest side, WIDTHxHEIGHT or none)",
            )
            parts["rotation"] = gr.Radio(
                list(ROTATIONS),
                value=default.rotation,
                label="Rotation handling",
                info="auto: also try image 2 at 90/180/270 degrees",
            )
            with gr.Row():
                parts["geometry"] = gr.Radio(
                    list(GEOMETRIC_MODELS), value=default.geometry, label="Geometric model"
                )
                parts["estimator"] = gr.Radio(
                    list(ESTIMATORS), value=default.estimator, label="Estimator"
                )
            parts["ransac_threshold"] = gr.Slider(
                0.5, 10.0, value=default.ransac_threshold, step=0.5, label="Inlier threshold (px)"
            )
        with gr.Column(scale=3):
            parts["status"] = gr.Markdown("", elem_id="status")
            parts["table"] = gr.HTML("", elem_id="numbers", padding=False)
            with gr.Tabs():
                with gr.Tab("Matches"):
                    parts["matches"] = gr.Image(
                        label="Inliers green, outliers red",
                        type="filepath",
                        interactive=False,
                        elem_id="matches-picture",
                    )
                with gr.Tab("LightGlue scores"):
                    parts["scores"] = gr.Image(
                        label="Lines coloured by LightGlue's score",
                        type="filepath",
                        interactive=False,
                    )
                with gr.Tab("Keypoints"):
                    parts["keypoints"] = gr.Image(
                        label="Keypoints, sized by score", type="filepath", interactive=False
                    )
                with gr.Tab("Overlay"):
                    parts["overlay"] = gr.Image(
                        label="Image 1 warped onto image 2 by the homography",
                        type="filepath",
                        interactive=False,
                    )
            with gr.Row():
                parts["downloads"] = gr.File(
                    label="Downloads (npz, json, pictures)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
                parts["command"] = gr.Markdown("", elem_id="command")
    parts["preset"].change(
        _fill_from_preset,
        parts["preset"],
        [parts["detector"], parts["matcher"], parts["max_keypoints"], parts["resize"]],
    )
    return parts


_FIELDS = (
    "preset",
    "detector",
    "matcher",
    "max_keypoints",
    "resize",
    "rotation",
    "geometry",
    "ransac_threshold",
    "estimator",
)


def _settings(values) -> MatchSettings:
    return MatchSettings(**dict(zip(_FIELDS, values)))


def _wire_match(image0, image1, parts: dict[str, Any], max_pixels: int, workdir) -> None:
    def on_match(first, second, *values):
        paths = upload_path(first), upload_path(second)
        view = run_match(*paths, _settings(values), workdir=workdir, max_pixels=max_pixels)
        status = view.status if view.ok else f'<span class="kp-error">{view.status}</span>'
        command = f"Same numbers from the command line:\n\n`{view.command}`" if view.ok else ""
        return (
            status,
            view.matches_picture,
            view.scores_picture,
            view.keypoints_picture,
            view.overlay_picture,
            numbers_html(view),
            view.downloads or None,
            command,
        )

    parts["button"].click(
        on_match,
        [image0, image1, *(parts[name] for name in _FIELDS)],
        [
            parts[name]
            for name in (
                "status",
                "matches",
                "scores",
                "keypoints",
                "overlay",
                "table",
                "downloads",
                "command",
            )
        ],
        concurrency_id="models",
        concurrency_limit=1,
        preprocess=False,  # uploads reach the handler undecoded (see upload_path)
        show_progress="full",
    )


def _compare_tab(image0, image1, parts: dict[str, Any], max_pixels: int, workdir) -> None:
    gr.Markdown(
        "Runs each preset on the two images above, with the geometric model, estimator, "
        "threshold and rotation handling of the Match tab."
    )
    presets = gr.CheckboxGroup(
        list(PRESETS), value=_offline_presets()[:3], label="Presets", elem_id="compare-presets"
    )
    button = gr.Button("Compare", variant="primary", elem_id="compare-button")
    status = gr.Markdown("", elem_id="compare-status")
    table = gr.Dataframe(
        headers=list(COMPARE_COLUMNS),
        interactive=False,
        label="Numbers",
        elem_id="compare-numbers",
        wrap=True,
    )
    gallery = gr.Gallery(
        label="Matches per preset",
        columns=2,
        height="auto",
        object_fit="contain",
        elem_id="compare-gallery",
    )

    def on_compare(first, second, chosen, *values):
        view = run_compare(
            upload_path(first),
            upload_path(second),
            chosen,
            _settings(values),
            workdir=workdir,
            max_pixels=max_pixels,
        )
        return view.status, view.rows or None, view.pictures or None

    button.click(
        on_compare,
        [image0, image1, presets, *(parts[name] for name in _FIELDS)],
        [status, table, gallery],
        concurrency_id="models",
        concurrency_limit=1,
        preprocess=False,  # uploads reach the handler undecoded (see upload_path)
    )
