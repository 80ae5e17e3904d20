"""Quality on real data with ground truth: Oxford affine sequences (graf, boat, wall), matches
by mutual nearest neighbour, fraction within 3 px of the ground-truth homography.

Measured on 2026-11-25 with this code (native resolution, at most 2048 keypoints: top-k mode
for ALIKED, the 2048 strongest for SIFT; MNN on L2-normalised descriptors):

    pair       aliked-n16  aliked-n16rot  sift
    graf 1-2   0.699       0.872          0.783
    boat 1-3   0.424       0.850          0.755
    wall 1-2   0.960       -              0.900
    graf 1-3   0.563       -              0.472

aliked-n16 is *not* better than SIFT on graf 1-2 and boat 1-3 at 3 px: boat 1-3 holds an
in-plane rotation that the upright variant is not trained for (aliked-t16 and -n32 fall to
0.09 and 0.11 there), and on graf 1-2 SIFT's matches are the more precise. The rotation-
trained aliked-n16rot beats SIFT on both, and aliked-n16 beats it on wall 1-2 and graf 1-3.
The floors below are the measured values minus 0.05.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DATA, require

import keypoints

OXFORD = DATA / "homography" / "oxford_affine"
MEASURED = {
    ("graf", 2): {"aliked-n16": 0.699, "aliked-n16rot": 0.872, "sift": 0.783},
    ("boat", 3): {"aliked-n16": 0.424, "aliked-n16rot": 0.850, "sift": 0.755},
    ("wall", 2): {"aliked-n16": 0.960, "sift": 0.900},
    ("graf", 3): {"aliked-n16": 0.563, "sift": 0.472},
}


def correct_fraction(seq: str, j: int, model: str) -> float:
    ext = "pgm" if seq == "boat" else "ppm"
    paths = [require(OXFORD / seq / f"img1.{ext}"), require(OXFORD / seq / f"img{j}.{ext}")]
    homography = np.loadtxt(OXFORD / seq / f"H1to{j}p")
    options = {"max_keypoints": 2048}
    if model.startswith("aliked"):
        options["threshold"] = 0.0  # top-k mode: the 2048 best
    f0, f1 = keypoints.detect([str(p) for p in paths], model, resize=None, **options)
    sim = f0.descriptors @ f1.descriptors.T
    nn01, nn10 = sim.argmax(1), sim.argmax(0)
    i0 = torch.arange(len(f0))[nn10[nn01] == torch.arange(len(f0))]
    i1 = nn01[i0]
    p = np.c_[f0.keypoints[i0].numpy(), np.ones(len(i0))] @ homography.T
    err = np.linalg.norm(p[:, :2] / p[:, 2:] - f1.keypoints[i1].numpy(), axis=1)
    assert len(err) > 100  # enough matches for the fraction to mean something
    return float((err < 3).mean())


@pytest.mark.parametrize("pair", list(MEASURED))
def test_fraction_of_correct_matches(pair):
    got = {model: correct_fraction(*pair, model) for model in MEASURED[pair]}
    for model, value in MEASURED[pair].items():
        assert got[model] >= value - 0.05, (model, got[model])
    if "aliked-n16rot" in got:
        assert got["aliked-n16rot"] > got["sift"]
    else:
        assert got["aliked-n16"] > got["sift"]
