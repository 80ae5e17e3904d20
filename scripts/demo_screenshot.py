"""Take the documentation's screenshot of the web demo: examples/demo.jpg.

Run from the repo root with the `[demo]` extra, Playwright and a Chromium binary:
``python scripts/demo_screenshot.py [CHROMIUM]`` (default: the `chromium` on PATH). Starts
``keypoints demo`` on a free port, picks the "cats, turned" example pair, matches it with the
default preset and saves the page's top 1400x1100 pixels.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else shutil.which("chromium")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "keypoints.cli", "demo", "--port", str(port)])
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=binary, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.locator("#examples").get_by_text("cats, turned 90 degrees").click()
            page.wait_for_selector("#image1 img")
            page.click("#match-button")
            page.wait_for_selector('#numbers [data-key="matches"]', timeout=180_000)
            page.wait_for_selector("#matches-picture img")
            page.wait_for_timeout(1500)
            png = page.screenshot()
            browser.close()
    finally:
        server.terminate()
    Image.open(io.BytesIO(png)).convert("RGB").save(ROOT / "examples" / "demo.jpg", quality=85)


if __name__ == "__main__":
    main()
