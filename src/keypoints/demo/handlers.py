"""What the web demo's buttons run, in plain Python (no Gradio): testable without a browser.

:func:`run_match` matches two uploaded images with :func:`keypoints.pair.match_images` (what
``keypoints match`` runs) and draws the pictures; :func:`run_compare` runs several presets on
the same pair. Both return a view (status line, numbers, picture and download paths) and never
raise for what a user can cause: a missing, corrupt, truncated or oversized upload, or options
that do not fit together, end in one message in the page. Anything unexpected is also reported
in the page (one line) and its traceback goes to the server's log.

Coordinates in the downloads are keypoints.io's: float32 (x, y) in original-image pixels, pixel
centres at integers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import DEFAULT_MAX_PIXELS, DEFAULT_RANSAC_THRESHOLD
from ..errors import ConfigError, KeypointsError
from ..image import normalize_resize, to_array
from ..pair import PairResult, match_images
from ..presets import PRESETS, compose, load_preset

__all__ = [
    "MatchSettings",
    "MatchView",
    "CompareView",
    "CUSTOM",
    "COMPARE_COLUMNS",
    "RESIZE_CHOICES",
    "preset_fields",
    "run_match",
    "run_compare",
    "read_upload",
    "overlay",
]

LOG = logging.getLogger("keypoints.demo")
#: The library's hint for a pixel limit (Python and CLI), rewritten for the page.
_MAX_PIXELS_HINT = re.compile(r"\(raise it with max_pixels= / --max-pixels[^)]*\)")

#: The preset dropdown's entry for "the fields as they are".
CUSTOM = "custom"
#: The resize dropdown's choices (any longest side or WIDTHxHEIGHT may be typed).
RESIZE_CHOICES = ("480", "640", "800", "1024", "1600", "none")
#: The Compare tab's table columns.
COMPARE_COLUMNS = (
    "preset",
    "detector",
    "matcher",
    "keypoints 1",
    "keypoints 2",
    "matches",
    "inliers",
    "seconds",
    "note",
)
#: Runs older than this many seconds lose their files (pictures and downloads).
KEEP_SECONDS = 3600


@dataclass
class MatchSettings:
    """The Match tab's fields.

    Attributes:
        preset: a preset name, or :data:`CUSTOM` (the fields alone).
        detector: a registered detector name.
        matcher: ``"auto"``, ``"lightglue"`` or ``"mnn"``.
        max_keypoints: keypoints kept per image.
        resize: a longest side (``"1024"``), ``"WIDTHxHEIGHT"`` or ``"none"``.
        rotation: ``"auto"`` or ``"none"``.
        geometry: ``"homography"`` or ``"fundamental"``.
        ransac_threshold: the estimator's inlier threshold in pixels.
        estimator: ``"poselib"`` or ``"opencv"``.
    """

    preset: str = "aliked-lightglue"
    detector: str = "aliked-n16rot"
    matcher: str = "lightglue"
    max_keypoints: int = 2048
    resize: str = "1024"
    rotation: str = "auto"
    geometry: str = "homography"
    ransac_threshold: float = DEFAULT_RANSAC_THRESHOLD
    estimator: str = "poselib"

    def pipeline(self):
        """The :class:`~keypoints.presets.Preset` these fields describe.

        The preset's own options (e.g. SuperPoint's threshold, SIFT's ratio test) apply while
        its detector is chosen; the fields shown win.
        """
        preset = None if self.preset == CUSTOM else load_preset(self.preset)
        if preset is not None and preset.detector != self.detector:
            preset = None  # the user changed the detector: the fields alone
        try:
            resize = normalize_resize(str(self.resize).strip().lower())
        except ConfigError:
            raise ConfigError(
                f"resize '{self.resize}': use a longest side (1024), WIDTHxHEIGHT (640x480) or "
                "'none'"
            ) from None
        count = int(self.max_keypoints)
        if count < 1:
            raise ConfigError(f"max keypoints must be at least 1, got {count}")
        return compose(preset, self.detector, {"max_keypoints": count}, resize, self.matcher)

    def command(self, image0: str = "IMAGE0", image1: str = "IMAGE1") -> str:
        """The ``keypoints match`` command line that gives the same numbers."""
        chosen = self.pipeline()
        parts = ["keypoints match", image0, image1]
        if chosen.name in PRESETS:
            parts += ["--preset", chosen.name]
        else:
            parts += ["-m", self.detector]
        parts += [
            f"--matcher {self.matcher}",
            f"--max-keypoints {int(self.max_keypoints)}",
            f"--resize {self.resize}",
            f"--rotation {self.rotation}",
            f"--verify {self.geometry}",
            f"--estimator {self.estimator}",
            f"--ransac-threshold {float(self.ransac_threshold):g}",
        ]
        return " ".join(parts)


@dataclass
class MatchView:
    """What the Match tab shows.

    Attributes:
        status: one Markdown line: what ran, or the error.
        ok: False when the run failed (``status`` says why).
        summary: the numbers as plain values (:meth:`keypoints.pair.PairResult.summary`).
        matches_picture: inliers green, outliers red (PNG path).
        scores_picture: lines coloured by LightGlue's score (PNG path), None for nearest
            neighbour.
        keypoints_picture: both images' keypoints sized by score (PNG path).
        overlay_picture: image 0 warped onto image 1 by the homography (PNG path), None without
            a homography.
        downloads: npz, json and the pictures.
        command: the equivalent ``keypoints match`` command.
    """

    status: str
    ok: bool = True
    summary: dict[str, Any] = field(default_factory=dict)
    matches_picture: str | None = None
    scores_picture: str | None = None
    keypoints_picture: str | None = None
    overlay_picture: str | None = None
    downloads: list[str] = field(default_factory=list)
    command: str = ""


@dataclass
class CompareView:
    """What the Compare tab shows.

    Attributes:
        status: one Markdown line.
        rows: one row per preset (:data:`COMPARE_COLUMNS`); a preset that failed has only its
            name and the error in ``note``.
        pictures: ``(png path, caption)`` per preset that ran.
    """

    status: str
    rows: list[list[Any]] = field(default_factory=list)
    pictures: list[tuple[str, str]] = field(default_factory=list)


def preset_fields(name: str) -> dict[str, Any]:
    """The fields a preset fills in: detector, matcher, max keypoints, resize."""
    preset = load_preset(name)
    resize = preset.resize
    if resize is None:
        shown = "none"
    elif isinstance(resize, int):
        shown = str(resize)
    else:
        shown = f"{resize[1]}x{resize[0]}"
    matcher = preset.matcher
    if matcher == "auto":
        matcher = "lightglue" if preset.matcher_weights else "mnn"
    return {
        "detector": preset.detector,
        "matcher": matcher,
        "max_keypoints": int(preset.options.get("max_keypoints", 2048)),
        "resize": shown,
    }


def _display_name(path: str | os.PathLike | None) -> str:
    return Path(path).name if path else ""


def read_upload(path: str | os.PathLike | None, which: str, max_pixels: int) -> np.ndarray:
    """Decode one upload, or raise :class:`KeypointsError` with a message for the page.

    Args:
        path: the uploaded file (Gradio keeps the original file name), or None.
        which: ``"image 1"`` or ``"image 2"``, for the message.
        max_pixels: the largest image accepted.

    Returns:
        The image, ``(H, W, 3)`` uint8 RGB (or what :func:`keypoints.image.to_array` gives).
    """
    if not path:
        raise KeypointsError(f"{which}: no image yet; upload one or pick an example pair")
    name = _display_name(path)
    try:
        return to_array(path, max_pixels=max_pixels)
    except KeypointsError as exc:
        message = str(exc).replace(f"'{os.fspath(path)}'", f"'{name}'")
        raise KeypointsError(f"{which}: {message}") from None


def _workdir(root: str | os.PathLike | None) -> Path:
    """A new folder for one run's files, under ``root``.

    ``root`` defaults to a folder in the system's temporary folder; folders of runs older than
    :data:`KEEP_SECONDS` are removed.
    """
    base = Path(root) if root else Path(tempfile.gettempdir()) / "keypoints-demo"
    base.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in base.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > KEEP_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    run = base / uuid.uuid4().hex[:12]
    run.mkdir()
    return run


def overlay(image0: np.ndarray, image1: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Image 0 warped onto image 1 by ``homography``, blended half and half.

    Args:
        image0: ``(H0, W0, 3)`` uint8.
        image1: ``(H1, W1, 3)`` uint8.
        homography: 3x3 float64 mapping image 0's pixels to image 1's (``x1 ~ H x0``, pixel
            centres at integers, as OpenCV's).

    Returns:
        ``(H1, W1, 3)`` uint8: image 1 where image 0 does not land, else the mean of both,
        with image 0's border drawn in yellow.
    """
    import cv2

    height, width = image1.shape[:2]
    a0 = np.ascontiguousarray(image0[..., :3]).astype(np.uint8)
    a1 = np.ascontiguousarray(image1[..., :3]).astype(np.uint8)
    warped = cv2.warpPerspective(a0, homography, (width, height))
    inside = (
        cv2.warpPerspective(np.full(a0.shape[:2], 255, np.uint8), homography, (width, height)) > 127
    )
    out = a1.copy()
    out[inside] = ((a1[inside].astype(np.uint16) + warped[inside]) // 2).astype(np.uint8)
    h0, w0 = a0.shape[:2]
    corners = np.array([[0, 0], [w0 - 1, 0], [w0 - 1, h0 - 1], [0, h0 - 1]], np.float64)
    projected = cv2.perspectiveTransform(corners[None], homography)[0]
    if np.all(np.isfinite(projected)):
        thickness = max(2, round(max(height, width) / 400))
        cv2.polylines(
            out, [np.round(projected).astype(np.int32)], True, (255, 221, 0), thickness, cv2.LINE_AA
        )
    return out


def _save_picture(figure, path: Path) -> str:
    import matplotlib.pyplot as plt

    from ..viz import save_figure

    save_figure(figure, path)
    plt.close(figure)
    return str(path)


def _keypoints_figure(arrays, result: PairResult):
    """Both images side by side, keypoints sized by score."""
    import matplotlib.pyplot as plt

    from ..viz import plot_keypoints

    heights = [a.shape[0] for a in arrays]
    widths = [a.shape[1] * max(heights) / a.shape[0] for a in arrays]
    scale = min(1.0, 1600 / sum(widths))
    figure, axes = plt.subplots(
        1,
        2,
        figsize=(sum(widths) * scale / 100 + 0.2, max(heights) * scale / 100 + 0.5),
        gridspec_kw={"width_ratios": widths},
    )
    for ax, array, features, name in zip(
        axes, arrays, (result.features0, result.features1), ("image 1", "image 2")
    ):
        plot_keypoints(array, features, ax=ax, title=f"{name}: {len(features)} keypoints")
    figure.tight_layout(pad=0.3)
    return figure


def _failure(exc: BaseException) -> str:
    if isinstance(exc, KeypointsError):
        hint = "(the demo's limit: `keypoints demo --max-pixels N` raises it)"
        message = _MAX_PIXELS_HINT.sub(hint, str(exc))
        return f"**Error:** {message}"
    LOG.exception("unexpected error in the demo")
    return (
        f"**Unexpected error:** {type(exc).__name__}: {exc} (the server's log has the "
        "traceback; please report it)"
    )


def run_match(
    image0: str | None,
    image1: str | None,
    settings: MatchSettings,
    *,
    workdir: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> MatchView:
    """Match two uploads and draw the results.

    Args:
        image0: path of the first upload (or an example), or None.
        image1: path of the second upload, or None.
        settings: the Match tab's fields.
        workdir: where runs keep their files (default: a ``keypoints-demo`` folder in the
            system's temporary folder).
        max_pixels: the largest image accepted.

    Returns:
        :class:`MatchView`; on bad input ``ok`` is False and ``status`` says why.
    """
    import matplotlib

    matplotlib.use("Agg")
    try:
        chosen = settings.pipeline()
        arrays = [
            read_upload(image0, "image 1", max_pixels),
            read_upload(image1, "image 2", max_pixels),
        ]
        result = match_images(
            arrays[0],
            arrays[1],
            chosen,
            geometry=settings.geometry,
            estimator=settings.estimator,
            ransac_threshold=float(settings.ransac_threshold),
            rotation=settings.rotation,
            max_pixels=max_pixels,
        )
        return _draw(image0, image1, arrays, result, settings, _workdir(workdir))
    except Exception as exc:  # noqa: BLE001 - the page shows one line, never a traceback
        return MatchView(status=_failure(exc), ok=False)


def _draw(
    image0, image1, arrays, result: PairResult, settings: MatchSettings, run: Path
) -> MatchView:
    from ..io.results import save_matches
    from ..viz import plot_matches

    found = result.verification
    names = (_display_name(image0), _display_name(image1))
    inliers = None if found is None else found.inliers
    matches_picture = _save_picture(
        plot_matches(
            arrays[0], arrays[1], result.features0, result.features1, result.matches, inliers
        ),
        run / "matches.png",
    )
    scores_picture = None
    if result.matches.scores is not None:
        scores_picture = _save_picture(
            plot_matches(arrays[0], arrays[1], result.features0, result.features1, result.matches),
            run / "matches_scores.png",
        )
    keypoints_picture = _save_picture(_keypoints_figure(arrays, result), run / "keypoints.png")
    overlay_picture = None
    if found is not None and found.model == "homography" and found.matrix is not None:
        from PIL import Image

        overlay_picture = str(run / "overlay.png")
        Image.fromarray(overlay(arrays[0], arrays[1], found.matrix)).save(overlay_picture)
    downloads = [
        str(
            save_matches(
                run / "matches.npz",
                result.features0,
                result.features1,
                result.matches,
                found,
                names,
            )
        ),
        str(
            save_matches(
                run / "matches.json",
                result.features0,
                result.features1,
                result.matches,
                found,
                names,
            )
        ),
    ]
    downloads += [
        p for p in (matches_picture, scores_picture, keypoints_picture, overlay_picture) if p
    ]
    summary = result.summary()
    inliers_text = "" if found is None else f", {found.num_inliers} inliers"
    status = (
        f"Matched **{names[0]}** and **{names[1]}**: {len(result.matches)} matches"
        f"{inliers_text} in {sum(result.timings.values()):.1f} s."
    )
    if found is not None and found.message:
        status += f" {found.message}."
    return MatchView(
        status,
        True,
        summary,
        matches_picture,
        scores_picture,
        keypoints_picture,
        overlay_picture,
        downloads,
        settings.command(names[0] or "IMAGE0", names[1] or "IMAGE1"),
    )


def run_compare(
    image0: str | None,
    image1: str | None,
    presets: Sequence[str],
    settings: MatchSettings,
    *,
    workdir: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> CompareView:
    """Run several presets on the same pair: a row of numbers and a picture per preset.

    Args:
        image0: path of the first upload, or None.
        image1: path of the second upload, or None.
        presets: preset names (each with its own detector, matcher, keypoints and resize).
        settings: the geometry, threshold, estimator and rotation fields are shared.
        workdir: as for :func:`run_match`.
        max_pixels: the largest image accepted.

    Returns:
        :class:`CompareView`; a preset that fails gets its error in its row, the others run.
    """
    import matplotlib

    from ..viz import plot_matches

    matplotlib.use("Agg")
    try:
        if not presets:
            raise KeypointsError("choose at least one preset to compare")
        arrays = [
            read_upload(image0, "image 1", max_pixels),
            read_upload(image1, "image 2", max_pixels),
        ]
        for name in presets:
            load_preset(name)  # unknown names refused before any work
        run = _workdir(workdir)
    except Exception as exc:  # noqa: BLE001 - one line in the page
        return CompareView(_failure(exc))
    rows, pictures = [], []
    for name in presets:
        try:
            result = match_images(
                arrays[0],
                arrays[1],
                load_preset(name),
                geometry=settings.geometry,
                estimator=settings.estimator,
                ransac_threshold=float(settings.ransac_threshold),
                rotation=settings.rotation,
                max_pixels=max_pixels,
            )
        except Exception as exc:  # noqa: BLE001 - this preset's row says why
            rows.append([name, "", "", "", "", "", "", "", _failure(exc).replace("**", "")])
            continue
        found = result.verification
        inliers = None if found is None else found.num_inliers
        seconds = sum(result.timings.values())
        counts = [len(result.features0), len(result.features1), len(result.matches), inliers]
        rows.append([name, result.pipeline.detector, result.method, *counts, f"{seconds:.2f}", ""])
        title = f"{name}: {len(result.matches)} matches, {inliers} inliers"
        figure = plot_matches(
            arrays[0],
            arrays[1],
            result.features0,
            result.features1,
            result.matches,
            None if found is None else found.inliers,
            title=title,
        )
        pictures.append((_save_picture(figure, run / f"{name}.png"), name))
    ran = sum(1 for row in rows if row[1])
    return CompareView(
        f"Compared {ran} of {len(presets)} presets ({settings.geometry}).", rows, pictures
    )
