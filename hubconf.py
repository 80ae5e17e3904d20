"""``torch.hub`` entry points: ``torch.hub.load("<owner>/keypoints", "aliked")``.

Each entry point returns a ready detector (or LightGlue matcher) of the ``keypoints`` package
from this checkout, with its weights: ALIKED, DISK, XFeat and LightGlue's ALIKED/DISK weights are
bundled (BSD-3 / Apache-2.0); SuperPoint's are fetched from the Hugging Face Hub (noncommercial
license, never bundled). Detectors take one image (``model.extract(image)``, as LightGlue's
extractors) and give :class:`keypoints.Features`: float32 (x, y) in original-image pixels,
pixel centres at integers.
"""

import os
import sys

dependencies = ["torch", "numpy", "PIL", "cv2", "safetensors", "huggingface_hub"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)  # the package lives in src/ (torch.hub imports this file only)


def detector(name="aliked-n16rot", **options):
    """Any registered detector by name (see ``keypoints models``), with detector options.

    ``options``: ``max_keypoints``, ``threshold``, ``nms_radius``, and ``device``, ``backend``,
    ``precision`` as :func:`keypoints.load_model` takes them.
    """
    import keypoints

    return keypoints.load_model(name, **options)


def aliked(variant="n16rot", **options):
    """ALIKED (BSD-3 weights, bundled): ``variant`` in t16, n16, n16rot, n32."""
    return detector(f"aliked-{variant}", **options)


def disk(**options):
    """DISK (Apache-2.0 weights from cvg's LightGlue release, bundled)."""
    return detector("disk", **options)


def xfeat(**options):
    """XFeat (Apache-2.0 weights, bundled)."""
    return detector("xfeat", **options)


def superpoint(**options):
    """SuperPoint (Magic Leap's noncommercial weights, from the Hugging Face Hub)."""
    return detector("superpoint", **options)


def lightglue(features="aliked", **options):
    """LightGlue trained on ``features``, as :func:`keypoints.matching.load_matcher`.

    ``aliked`` and ``disk`` are bundled; ``superpoint`` and ``sift`` are cvg's releases,
    downloaded once.
    """
    from keypoints.matching import load_matcher

    return load_matcher(features, **options)
