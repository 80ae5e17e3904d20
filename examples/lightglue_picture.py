"""Draw examples/lightglue_matches.jpg: the README's transformers-style LightGlue example with
stand-in weights, because the Hub (ETH-CVG/lightglue_superpoint) cannot be reached where this
repository is built.

    python examples/lightglue_picture.py

Stand-in: the released SuperPoint encoder and descriptor head (../shared/data) with a random
detector head, 2048 keypoints at threshold 0.0005 (the released checkpoint's settings), and
LightGlue layers whose MLP outputs are zeroed (descriptors pass through unchanged), final
projections 20 x identity and matchability bias 5: matches follow descriptor similarity.
Prints the number of matches above 0.2 and how many land within 4 px of the true homography.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

import keypoints
from keypoints import LightGlueConfig

ROOT = Path(__file__).resolve().parents[1]
PARTIAL = ROOT.parent / "shared/data/weights/superpoint_partial"
PARTIAL = PARTIAL / "superpoint_v1_encoder_descriptor.safetensors"


def stand_in() -> keypoints.LightGlueForKeypointMatching:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the detector head is missing: random
        superpoint = keypoints.SuperPoint.from_pretrained(PARTIAL, strict=False)
    detector = {"max_keypoints": 2048, "keypoint_threshold": 0.0005}
    model = keypoints.LightGlueForKeypointMatching(
        LightGlueConfig(keypoint_detector_config=detector)
    )
    model.keypoint_detector.load_state_dict(superpoint.state_dict())
    with torch.no_grad():
        for layer in model.match_assignment_layers:
            layer.final_projection.weight.copy_(20 * torch.eye(256))
            layer.matchability.bias.fill_(5.0)
        for layer in model.transformer_layers:
            for mlp in (layer.self_mlp, layer.cross_mlp):
                mlp.fc2.weight.zero_()
                mlp.fc2.bias.zero_()
    return model.eval()


def main() -> None:
    images = [Image.open(ROOT / "examples/cats.png"), Image.open(ROOT / "examples/cats_warped.jpg")]
    processor = keypoints.LightGlueImageProcessor()
    model = stand_in()
    inputs = processor(images, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    image_sizes = [[(image.height, image.width) for image in images]]
    outputs = processor.post_process_keypoint_matching(outputs, image_sizes, threshold=0.2)
    k0, k1 = (outputs[0][k].numpy().astype(np.float64) for k in ("keypoints0", "keypoints1"))
    homography = np.loadtxt(ROOT / "examples/cats_H.txt")
    error = np.linalg.norm(cv2.perspectiveTransform(k0[None], homography)[0] - k1, axis=1)
    print(f"matches above 0.2: {len(k0)}, within 4 px of the true homography: {(error < 4).sum()}")
    picture = processor.visualize_keypoint_matching(images, outputs)[0]
    picture.convert("RGB").save(ROOT / "examples/lightglue_matches.jpg", quality=80)


if __name__ == "__main__":
    main()
