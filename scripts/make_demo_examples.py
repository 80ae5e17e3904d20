"""Make the web demo's example pairs (src/keypoints/demo/examples) from two COCO images.

Run once from the repo root: ``python scripts/make_demo_examples.py [SHARED_DATA]``. Both
sources are COCO val2017 images (Flickr, CC BY; the copies transformers' tests use):
``examples/cats.png`` (000000039769) and ``images/coco/000000004016.png`` from the shared data
folder. Each pair is image A and a known transformation of it; the homography of each pair
(image A's pixels to image B's, pixel centres at integers) is written beside it as
``<pair>_H.txt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "keypoints" / "demo" / "examples"


def save(array: np.ndarray, name: str) -> None:
    Image.fromarray(array).save(OUT / name, quality=90, optimize=True)


def warp(array: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.warpPerspective(
        array,
        homography,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(24, 24, 24),
    )


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    OUT.mkdir(parents=True, exist_ok=True)
    cats = np.asarray(Image.open(ROOT / "examples" / "cats.png").convert("RGB"))
    kitchen = np.asarray(Image.open(shared / "images/coco/000000004016.png").convert("RGB"))

    # 1. the cats and the README's warped copy (examples/cats_H.txt)
    save(cats, "cats.jpg")
    h = np.loadtxt(ROOT / "examples" / "cats_H.txt")
    save(warp(cats, h, (640, 480)), "cats_warped.jpg")
    np.savetxt(OUT / "cats_warped_H.txt", h)

    # 2. the cats zoomed out and turned by 90 degrees (rotation handling): a zoom about
    # the centre, then np.rot90's quarter turn
    height, width = cats.shape[:2]
    zoom = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), 0, 0.8)
    zoom = np.vstack([zoom, [0, 0, 1]])
    turn = np.array([[0, 1, 0], [-1, 0, width - 1], [0, 0, 1]], np.float64)  # np.rot90, k=1
    turned = np.rot90(warp(cats, zoom, (width, height))).copy()
    save(turned, "cats_turned.jpg")
    np.savetxt(OUT / "cats_turned_H.txt", turn @ zoom)

    # 3. a kitchen seen from another viewpoint, darker
    height, width = kitchen.shape[:2]
    src = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    dst = np.float32([[40, 30], [width - 90, 0], [width - 20, height - 40], [10, height - 10]])
    h = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    darker = (255 * (kitchen / 255.0) ** 1.4).astype(np.uint8)
    save(kitchen, "kitchen.jpg")
    save(warp(darker, h, (width, height)), "kitchen_viewpoint.jpg")
    np.savetxt(OUT / "kitchen_viewpoint_H.txt", h)


if __name__ == "__main__":
    main()
