"""The accuracy cost of the fast modes on the shared Oxford sequences (15 pairs).

    python benchmarks/fast_accuracy.py [--precisions fp32,bf16,int8] [--pairs 5]

SuperPoint with the released encoder and descriptor head (../shared/data; Magic Leap's weights,
not bundled). Its detector head is not available here, so the matches use a real detector's
keypoints: per precision, SuperPoint's descriptors (computed in that precision) at
ALIKED-n16rot's fp32 keypoints (2048 best, native size), mutual nearest-neighbour matches,
MMA@3 against the ground-truth homography, H@5 and AUC@5 of the homography PoseLib fits at
2 px. The last column: the share of fp32's keypoints that SuperPoint with a seeded stand-in
detector head finds again within 0.5 px in that precision (a random head scores most pixels
almost alike, so this understates what a trained head keeps). The default pipeline's fast
mode (ALIKED bf16 + LightGlue bf16) is measured by ``keypoints eval homography DATASET
--precision fast`` instead (the real weights of both are bundled).

The same measurement (on fewer pairs) is asserted by tests/test_backends.py.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _common import DATA, cpu_info, print_table

OXFORD = DATA / "homography" / "oxford_affine"
PARTIAL = DATA / "weights" / "superpoint_partial" / "superpoint_v1_encoder_descriptor.safetensors"


def stand_in_superpoint(max_keypoints: int = 2048):
    """Real encoder + descriptor head, seeded random detector head with spread scores."""
    import torch
    from safetensors.torch import load_file

    from keypoints import SuperPoint

    torch.manual_seed(0)
    model = SuperPoint(max_keypoints=max_keypoints)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                module.bias.zero_()
        model.convPb.weight.mul_(10.0)
    model.load_state_dict(load_file(PARTIAL), strict=False)
    return model.eval().set_backend("auto")


def superpoint_descriptors(model, path: str, points):
    """SuperPoint's descriptors of the image at ``path``, sampled at ``points (N, 2)`` pixels."""
    import torch
    import torch.nn.functional as F

    from keypoints.image import to_array
    from keypoints.models import ops

    array = to_array(path)  # (H, W, C), uint8 for 8-bit images
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    array = torch.from_numpy(array.astype(np.float32) / scale)
    if array.shape[-1] == 3:  # the grayscale SuperPoint reads (transformers' weights)
        array = array @ torch.tensor([0.2989, 0.587, 0.114])[:, None]
    gray = array[None, None, :, :, 0]
    height, width = gray.shape[-2:]
    gray = F.pad(gray, (0, -width % 8, 0, -height % 8))
    with torch.inference_mode():
        _, dense = model.dense(gray)
    return ops.sample_descriptors(points[None], dense, 8)[0]


def measure(model, precision: str, pairs: int, anchors: dict, reference=None) -> dict:
    """MMA@3, H@5, AUC@5 over ``pairs`` pairs per sequence, and keypoint agreement.

    Matches: mutual nearest neighbours of SuperPoint's descriptors at ``anchors`` (path ->
    ALIKED-n16rot's fp32 keypoints, a real detector), so the score measures the descriptors
    the released weights compute. Agreement: the share of fp32's own (stand-in head) keypoints
    found again within 0.5 px.
    """
    import torch

    import keypoints
    from keypoints import Features
    from keypoints.estimators import fit
    from keypoints.evaluation.datasets import load_dataset
    from keypoints.evaluation.metrics import (
        corner_error,
        homography_accuracy,
        homography_auc,
        matching_accuracy,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_precision(precision)
    mma, errors, described, own, kept = [], [], {}, {}, []

    def features(path: str) -> Features:
        if path not in described:
            points = anchors[path]
            descriptors = superpoint_descriptors(model, path, points.keypoints)
            described[path] = Features(points.keypoints, points.scores, descriptors,
                                       points.image_size, "superpoint")  # fmt: skip
            own[path] = keypoints.detect(path, model)[0].keypoints
        return described[path]

    for sequence in load_dataset(OXFORD):
        for pair in sequence.pairs[:pairs]:
            f0, f1 = features(str(pair.path0)), features(str(pair.path1))
            idx = keypoints.match(f0, f1, "mnn").indices.numpy()
            k0, k1 = f0.keypoints.numpy(), f1.keypoints.numpy()
            mma.append(matching_accuracy(k0, k1, idx, pair.homography, thresholds=(3,))[0])
            estimate, _ = fit(k0[idx[:, 0]], k1[idx[:, 1]], "homography", "poselib", 2.0)
            errors.append(corner_error(estimate, pair.homography, f0.image_size))
    if reference is not None:
        for path, points in own.items():
            distance = torch.cdist(reference["own"][path], points).min(1).values
            kept.append(float((distance < 0.5).float().mean()))
    return {
        "mma3": float(np.mean(mma)),
        "h5": homography_accuracy(errors)["5"],
        "auc5": homography_auc(errors)["5"],
        "agreement": float(np.mean(kept)) if kept else 1.0,
        "pairs": len(mma),
        "own": own,
    }


def anchor_keypoints(pairs: int) -> dict:
    """ALIKED-n16rot's fp32 keypoints (2048 best) of every image the pairs use."""
    import keypoints
    from keypoints.evaluation.datasets import load_dataset

    paths = {str(p) for s in load_dataset(OXFORD) for pair in s.pairs[:pairs]
             for p in (pair.path0, pair.path1)}  # fmt: skip
    model = keypoints.load_model("aliked-n16rot", max_keypoints=2048, threshold=0.0)
    return {path: keypoints.detect(path, model)[0] for path in sorted(paths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--pairs", type=int, default=5, help="pairs per sequence (1-2 .. 1-6)")
    args = parser.parse_args()
    model = stand_in_superpoint()
    anchors = anchor_keypoints(args.pairs)
    rows, reference = [], None
    for precision in args.precisions.split(","):
        result = measure(model, precision, args.pairs, anchors, reference)
        reference = reference or result
        rows.append([
            f"superpoint {precision} ({model.precision})", str(result["pairs"]),
            f"{result['mma3']:.3f}", f"{result['mma3'] - reference['mma3']:+.3f}",
            f"{result['h5']:.3f}", f"{result['auc5']:.3f}", f"{result['agreement']:.3f}",
        ])  # fmt: skip
    print(cpu_info())
    print(
        "SuperPoint's released descriptors at ALIKED-n16rot's 2048 keypoints, mutual NN, "
        "PoseLib 2 px, Oxford affine; keypoints kept: its own stand-in detector head's\n"
    )
    print_table(["precision (run as)", "pairs", "MMA@3", "vs fp32", "H@5", "AUC@5",
                 "stand-in keypoints kept (0.5 px)"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
