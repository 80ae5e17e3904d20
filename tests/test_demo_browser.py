"""The web demo in a real browser: `keypoints demo` in a subprocess, driven by Playwright.

Playwright drives the distribution's Chromium (``apt-get install -y chromium``, which
``.ci/run`` makes sure of; Playwright's own browser download cannot work offline). The test
loads the page, picks an example pair, matches it, checks the numbers shown against
``keypoints match`` on the same pair with the same settings, uploads a corrupt file and checks
the message, runs the Compare tab, and saves screenshots in its tmp dir.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from keypoints.demo import handlers
from keypoints.io.results import load_matches

pytestmark = pytest.mark.slow

EXAMPLES = Path(handlers.__file__).parent / "examples"
TIMEOUT_MS = 180_000


def chromium() -> str | None:
    """The distribution's Chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    """`keypoints demo` on a free local port, started in a subprocess; its URL."""
    pytest.importorskip("gradio")
    if chromium() is None:
        pytest.skip("no Chromium binary (apt-get install -y chromium); .ci/run installs it")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "keypoints.cli", "demo", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"the demo did not start:\n{log.read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield instance
        instance.close()


def shown_numbers(page) -> dict[str, int]:
    values = {}
    for key in ("keypoints0", "keypoints1", "matches", "inliers"):
        values[key] = int(page.locator(f'#numbers [data-key="{key}"]').inner_text())
    return values


def cli_numbers(image0: Path, image1: Path, tmp_path: Path, *options: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-m", "keypoints.cli", "match", str(image0), str(image1), *options,
         "-o", str(tmp_path / "cli.png")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    counts = re.search(r"keypoints: (\d+) in .*, (\d+) in ", out)
    assert counts, out
    return {
        "keypoints0": int(counts[1]),
        "keypoints1": int(counts[2]),
        "matches": int(re.search(r"matches: (\d+)", out)[1]),
        "inliers": int(re.search(r"inliers \(.*\): (\d+)", out)[1]),
    }


def wait_for_status(page, text: str) -> str:
    page.wait_for_function(
        "text => (document.querySelector('#status')?.innerText || '').includes(text)",
        arg=text, timeout=TIMEOUT_MS,
    )  # fmt: skip
    return page.locator("#status").inner_text()


def test_match_an_example_pair_in_the_browser(page_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(page_url)
    page.wait_for_selector("#match-button", timeout=TIMEOUT_MS)
    assert "keypoints" in page.title()
    page.screenshot(path=tmp_path / "1-page.png", full_page=True)

    # an example pair: both images appear
    page.locator("#examples").get_by_text("cats, turned 90 degrees and zoomed out").click()
    page.wait_for_selector("#image0 img", timeout=TIMEOUT_MS)
    page.wait_for_selector("#image1 img", timeout=TIMEOUT_MS)

    # match with the default preset; the numbers appear
    page.click("#match-button")
    status = wait_for_status(page, "Matched")
    assert "cats.jpg" in status and "cats_turned.jpg" in status
    page.wait_for_selector("#matches-picture img", timeout=TIMEOUT_MS)
    page.screenshot(path=tmp_path / "2-matched.png", full_page=True)
    shown = shown_numbers(page)
    assert shown["matches"] > 300 and shown["inliers"] > 0.8 * shown["matches"]

    # the same pair and settings on the command line: the same numbers
    assert "turned by 270 degrees" in page.locator("#numbers").inner_text()
    expected = cli_numbers(
        EXAMPLES / "cats.jpg", EXAMPLES / "cats_turned.jpg", tmp_path, "--preset",
        "aliked-lightglue", "--max-keypoints", "2048", "--resize", "1024", "--rotation", "auto",
        "--verify", "homography", "--estimator", "poselib", "--ransac-threshold", "2",
    )  # fmt: skip
    assert shown == expected
    command = page.locator("#command").inner_text()
    assert "keypoints match cats.jpg cats_turned.jpg --preset aliked-lightglue" in command

    # downloads: the npz behind the page's link holds the matches shown
    links = page.locator("#downloads a").evaluate_all("links => links.map(a => a.href)")
    npz = [link for link in links if link.split("?")[0].endswith("matches.npz")]
    assert npz and any(link.split("?")[0].endswith("matches.json") for link in links)
    (tmp_path / "matches.npz").write_bytes(urllib.request.urlopen(npz[0], timeout=30).read())
    saved = load_matches(tmp_path / "matches.npz")
    assert len(saved["matches"]) == shown["matches"]
    assert int(saved["inliers"].sum()) == shown["inliers"]

    # a corrupt upload: one message in the page, no traceback
    corrupt = tmp_path / "holiday.jpg"
    corrupt.write_bytes((EXAMPLES / "cats_warped.jpg").read_bytes()[:15000])
    page.locator("#image1 button[aria-label='Remove Image']").click()
    page.locator("#image1 input[type=file]").set_input_files(str(corrupt))
    page.wait_for_selector("#image1 img", timeout=TIMEOUT_MS)
    page.click("#match-button")
    message = wait_for_status(page, "Error")
    assert "image 2: image 'holiday.jpg' could not be decoded" in message
    assert "truncated" in message and "Traceback" not in page.content()
    page.screenshot(path=tmp_path / "3-corrupt.png", full_page=True)

    # not an image at all
    text = tmp_path / "notes.png"
    text.write_text("these are my notes")
    page.locator("#image1 button[aria-label='Remove Image']").click()
    page.locator("#image1 input[type=file]").set_input_files(str(text))
    page.wait_for_timeout(1000)
    page.click("#match-button")
    message = wait_for_status(page, "not an image")
    assert "image 2: 'notes.png' is not an image file" in message
    page.close()


def test_compare_presets_in_the_browser(page_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(page_url)
    page.wait_for_selector("#match-button", timeout=TIMEOUT_MS)
    page.locator("#examples").get_by_text("kitchen, new viewpoint and darker").click()
    page.wait_for_selector("#image1 img", timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Compare presets").click()
    page.click("#compare-button")
    page.wait_for_function(
        "() => (document.querySelector('#compare-status')?.innerText || '').includes('Compared')",
        timeout=TIMEOUT_MS,
    )  # fmt: skip
    status = page.locator("#compare-status").inner_text()
    chosen = page.locator("#compare-presets input:checked").count()
    assert f"Compared {chosen} of {chosen} presets" in status
    page.wait_for_selector("#compare-gallery img", timeout=TIMEOUT_MS)
    table = page.locator("#compare-numbers").inner_text()
    assert "aliked-lightglue" in table
    page.screenshot(path=tmp_path / "4-compare.png", full_page=True)
    page.close()
