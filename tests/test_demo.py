"""keypoints.demo: each handler of the web demo in Python (no browser), good and bad input."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import keypoints
from keypoints.cli import main
from keypoints.demo import handlers
from keypoints.demo.handlers import MatchSettings, overlay, preset_fields, run_compare, run_match
from keypoints.io.results import load_matches
from keypoints.pair import match_images

EXAMPLES = Path(handlers.__file__).parent / "examples"
CATS, WARPED, TURNED = (
    EXAMPLES / "cats.jpg",
    EXAMPLES / "cats_warped.jpg",
    EXAMPLES / "cats_turned.jpg",
)
FAST = MatchSettings(preset="sift-mnn", detector="sift", matcher="mnn", max_keypoints=1024)


@pytest.fixture
def corrupt(tmp_path) -> dict[str, Path]:
    """A text file named .png, a JPEG cut short, an empty file."""
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(WARPED.read_bytes()[:20000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    return {"text": text, "cut": cut, "empty": empty}


def test_example_pairs_are_their_homographies():
    """Each shipped second image is its first image under the recorded homography."""
    for first, second in (("cats", "cats_warped"), ("cats", "cats_turned"),
                          ("kitchen", "kitchen_viewpoint")):  # fmt: skip
        h = np.loadtxt(EXAMPLES / f"{second}_H.txt")
        a = np.asarray(Image.open(EXAMPLES / f"{first}.jpg").convert("L"), np.float32)
        b = np.asarray(Image.open(EXAMPLES / f"{second}.jpg").convert("L"), np.float32)
        import cv2

        warped = cv2.warpPerspective(a, h, (b.shape[1], b.shape[0]), borderValue=-1)
        inside = warped >= 0
        inside &= cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert inside.mean() > 0.4
        error = np.abs(warped[inside] - b[inside])
        if second == "kitchen_viewpoint":  # darker: compare after the same gamma
            error = np.abs(255 * (warped[inside] / 255) ** 1.4 - b[inside])
        assert np.median(error) < 6, second


def test_run_match_gives_match_pair_numbers_and_files(tmp_path):
    view = run_match(str(CATS), str(WARPED), MatchSettings(), workdir=tmp_path)
    assert view.ok, view.status
    settings = MatchSettings()
    result = match_images(str(CATS), str(WARPED), settings.pipeline(), geometry="homography",
                        rotation="auto")  # fmt: skip
    summary = view.summary
    assert summary["keypoints0"] == len(result.features0) > 500
    assert summary["keypoints1"] == len(result.features1) > 500
    assert summary["matches"] == len(result.matches) > 300
    assert summary["inliers"] == result.num_inliers > 0.9 * summary["matches"]
    assert summary["matcher"] == "lightglue" and summary["model"] == "homography"
    assert set(summary["seconds"]) == {"load", "detect", "match", "verify"}
    assert "cats.jpg" in view.status and f"{summary['matches']} matches" in view.status
    # downloads: the results round trip, the pictures are PNGs
    names = [Path(p).name for p in view.downloads]
    assert names[:2] == ["matches.npz", "matches.json"]
    for path in view.downloads[:2]:
        saved = load_matches(path)
        np.testing.assert_array_equal(saved["matches"], result.matches.indices.numpy())
        assert saved["inliers"].sum() == summary["inliers"]
        np.testing.assert_allclose(saved["keypoints0"], result.features0.keypoints.numpy())
        assert saved["image0"] == "cats.jpg"
    for picture in (view.matches_picture, view.scores_picture, view.keypoints_picture,
                    view.overlay_picture):  # fmt: skip
        assert picture in view.downloads
        with Image.open(picture) as im:
            assert im.format == "PNG" and min(im.size) > 200
    # the homography lines image 1 up with image 2: the overlay's inside is their mean
    with Image.open(view.overlay_picture) as im:
        assert im.size == Image.open(WARPED).size


def test_the_command_shown_gives_the_same_numbers(tmp_path, capsys):
    """The page prints a `keypoints match` command; run it: same keypoints, matches, inliers."""
    view = run_match(str(CATS), str(TURNED), MatchSettings(), workdir=tmp_path)
    assert view.ok, view.status
    assert view.summary["rotation"] == 270  # the example is turned 90 degrees
    argv = view.command.split()[1:]
    argv[1:3] = [str(CATS), str(TURNED)]
    capsys.readouterr()
    assert main([*argv, "-o", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    s = view.summary
    assert f"keypoints: {s['keypoints0']} in {CATS}, {s['keypoints1']} in {TURNED}" in out
    assert f"matches: {s['matches']} (LightGlue)" in out
    assert f"inliers (homography, poselib 2.0 px): {s['inliers']}" in out
    assert "turned by 270 degrees" in out


def test_fundamental_and_nearest_neighbour_draw_no_overlay_or_scores(tmp_path):
    settings = dataclasses.replace(FAST, geometry="fundamental", ransac_threshold=1.0)
    view = run_match(str(CATS), str(WARPED), settings, workdir=tmp_path)
    assert view.ok, view.status
    assert view.summary["model"] == "fundamental" and view.summary["matcher"] == "mnn"
    assert view.summary["ransac_threshold"] == 1.0
    assert view.overlay_picture is None and view.scores_picture is None
    assert view.summary["rotation"] is None  # SIFT is rotation invariant: no search
    assert "--preset sift-mnn" in view.command and "--verify fundamental" in view.command


def test_changed_detector_leaves_the_preset(tmp_path):
    """A detector other than the preset's: the fields alone (a custom pipeline)."""
    settings = dataclasses.replace(MatchSettings(), detector="sift", matcher="mnn",
                                   max_keypoints=300)  # fmt: skip
    chosen = settings.pipeline()
    assert chosen.name == "sift" and chosen.detector == "sift"
    assert chosen.options["max_keypoints"] == 300 and chosen.matcher == "mnn"
    view = run_match(str(CATS), str(WARPED), settings, workdir=tmp_path)
    assert view.ok and view.summary["keypoints0"] == 300
    assert "-m sift" in view.command


@pytest.mark.parametrize("name", list(keypoints.PRESETS))
def test_preset_fields_describe_the_preset(name):
    fields = preset_fields(name)
    preset = keypoints.load_preset(name)
    settings = dataclasses.replace(MatchSettings(), preset=name, **fields)
    chosen = settings.pipeline()
    assert chosen.name == name and chosen.detector == preset.detector
    assert chosen.options == {**preset.options, "max_keypoints": fields["max_keypoints"]}
    assert chosen.resize == preset.resize
    assert chosen.matcher_options == preset.matcher_options


@pytest.mark.parametrize(
    ("which", "expected"),
    [("text", "'notes.png' is not an image file"), ("cut", "is it truncated?"),
     ("empty", "'empty.jpg' is an empty file")],
)  # fmt: skip
def test_bad_uploads_end_in_one_message(tmp_path, corrupt, which, expected):
    view = run_match(str(CATS), str(corrupt[which]), FAST, workdir=tmp_path / "runs")
    assert not view.ok
    assert view.status.startswith("**Error:** image 2: ")
    assert expected in view.status
    assert str(tmp_path) not in view.status  # the upload's own name, not the server's path
    assert "Traceback" not in view.status and view.downloads == []


def test_too_large_and_missing_uploads(tmp_path):
    view = run_match(str(CATS), str(WARPED), FAST, workdir=tmp_path, max_pixels=100_000)
    assert not view.ok
    assert (
        "image 1: 'cats.jpg' has 640x480 = 307200 pixels, over the limit of 100000" in view.status
    )
    assert "keypoints demo --max-pixels" in view.status
    assert "image 1: no image yet" in run_match(None, str(WARPED), FAST).status
    assert "image 2: no image yet" in run_match(str(CATS), "", FAST).status


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"resize": "big"}, "resize 'big': use a longest side"),
     ({"max_keypoints": 0}, "max keypoints must be at least 1"),
     ({"preset": "nope"}, "unknown preset 'nope'"),
     ({"geometry": "affine"}, "unknown geometric model 'affine'"),
     ({"rotation": "sideways"}, "unknown rotation 'sideways'")],
)  # fmt: skip
def test_bad_settings_end_in_one_message(tmp_path, change, expected):
    view = run_match(str(CATS), str(WARPED), dataclasses.replace(FAST, **change),
                     workdir=tmp_path)  # fmt: skip
    assert not view.ok and expected in view.status, view.status


def test_unexpected_errors_are_one_line_in_the_page(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(handlers, "match_images", broken)
    view = run_match(str(CATS), str(WARPED), FAST, workdir=tmp_path)
    assert not view.ok
    assert view.status.startswith("**Unexpected error:** RuntimeError: boom")
    assert "Traceback" not in view.status
    assert "Traceback" in caplog.text  # the server's log keeps it


def test_old_runs_are_removed(tmp_path):
    old = tmp_path / "0123456789ab"
    old.mkdir()
    (old / "matches.png").write_bytes(b"x")
    past = time.time() - handlers.KEEP_SECONDS - 10
    os.utime(old, (past, past))
    view = run_match(str(CATS), str(WARPED), FAST, workdir=tmp_path)
    assert view.ok and not old.exists()
    assert Path(view.matches_picture).parent.parent == tmp_path


def test_overlay_analytic():
    rng = np.random.default_rng(0)
    image0 = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    image1 = np.zeros((70, 90, 3), np.uint8)
    shift = np.array([[1, 0, 5], [0, 1, 7], [0, 0, 1]], np.float64)
    out = overlay(image0, image1, shift)
    assert out.shape == (70, 90, 3) and out.dtype == np.uint8
    inner = out[7 + 5 : 7 + 55, 5 + 5 : 5 + 75]  # away from the drawn border
    np.testing.assert_array_equal(inner, image0[5:55, 5:75] // 2)
    assert (out[:5, :] == 0).all()  # outside image 0: image 1 alone
    border = out[7, 5 + 10 : 5 + 70]
    assert (border[:, 0] > 200).all() and (border[:, 2] < 60).all()  # yellow outline


def test_compare_runs_each_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # superpoint's weights are not bundled
    presets = ["sift-mnn", "fast", "superpoint-lightglue"]
    view = run_compare(str(CATS), str(WARPED), presets, MatchSettings(), workdir=tmp_path)
    assert view.status == "Compared 2 of 3 presets (homography)."
    rows = {row[0]: row for row in view.rows}
    assert len(view.rows[0]) == len(handlers.COMPARE_COLUMNS)
    for name in ("sift-mnn", "fast"):
        result = match_images(str(CATS), str(WARPED), keypoints.load_preset(name),
                            geometry="homography", rotation="auto")  # fmt: skip
        assert rows[name][3:7] == [len(result.features0), len(result.features1),
                                   len(result.matches), result.num_inliers]  # fmt: skip
    failed = rows["superpoint-lightglue"]
    assert failed[1] == "" and failed[-1].startswith("Error: ")
    assert [caption for _, caption in view.pictures] == ["sift-mnn", "fast"]
    assert all(Path(path).is_file() for path, _ in view.pictures)


def test_compare_refuses_nothing_or_unknown(tmp_path):
    assert "choose at least one preset" in run_compare(str(CATS), str(WARPED), [], FAST).status
    view = run_compare(str(CATS), str(WARPED), ["sift-mnn", "sift-mn"], FAST, workdir=tmp_path)
    assert "unknown preset 'sift-mn'" in view.status and view.rows == []
    assert "image 2: no image yet" in run_compare(str(CATS), None, ["fast"], FAST).status


def test_build_app_has_the_page_parts():
    pytest.importorskip("gradio")
    from keypoints.demo import build_app

    app = build_app()
    ids = {block.elem_id for block in app.blocks.values() if getattr(block, "elem_id", None)}
    assert {"image0", "image1", "examples", "match-button", "status", "numbers", "downloads",
            "compare-button", "compare-numbers", "compare-gallery"} <= ids  # fmt: skip
    from keypoints.demo.app import upload_path

    # the buttons take uploads undecoded: a corrupt file reaches our message, not Gradio's
    assert all(not fn.preprocess for fn in app.fns.values() if fn.name.startswith("on_"))
    assert upload_path({"path": "/tmp/x/holiday.jpg", "url": None}) == "/tmp/x/holiday.jpg"
    assert upload_path(None) is None and upload_path("/a/b.png") == "/a/b.png"


def test_numbers_html_carries_the_values(tmp_path):
    pytest.importorskip("gradio")
    from keypoints.demo.app import numbers_html

    view = run_match(str(CATS), str(WARPED), FAST, workdir=tmp_path)
    page = numbers_html(view)
    for key in ("keypoints0", "keypoints1", "matches", "inliers"):
        assert f'data-key="{key}">{view.summary[key]}<' in page
    assert numbers_html(run_match(None, None, FAST)) == ""


def test_cli_demo_errors(monkeypatch, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    assert f"port {port} is in use on 127.0.0.1; choose another with --port" in (
        capsys.readouterr().err
    )
    import builtins

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio":
            raise ImportError("no gradio")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    assert main(["demo", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "the demo needs Gradio" in err and "pip install 'keypoints[demo]'" in err


def test_launch_serves_one_run_at_a_time(tmp_path):
    pytest.importorskip("gradio")
    import socket
    import urllib.request

    from keypoints.demo import launch
    from keypoints.demo.app import QUEUE_SIZE

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = launch(port=port, block=False, workdir=str(tmp_path))
    try:
        assert urllib.request.urlopen(app.local_url, timeout=10).status == 200
        assert app.max_file_size == 50 * 1024 * 1024  # uploads over 50 MB refused
        assert app._queue.max_size == QUEUE_SIZE
        buttons = [fn for fn in app.fns.values() if fn.name in ("on_match", "on_compare")]
        assert len(buttons) == 2
        assert {fn.concurrency_id for fn in buttons} == {"models"}  # one queue for both tabs
        assert all(fn.concurrency_limit == 1 for fn in buttons)
    finally:
        app.close()
