"""hubconf.py: torch.hub.load on this checkout gives the package's detectors and matchers."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import EXAMPLE

import keypoints

ROOT = Path(__file__).resolve().parents[1]


def test_torch_hub_entry_points_give_working_models():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    assert spec is not None and spec.loader is not None
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    for name in ("aliked", "disk", "xfeat", "superpoint", "lightglue", "detector"):
        assert callable(getattr(hubconf, name))
    assert set(hubconf.dependencies) >= {"torch", "numpy"}
    net = torch.hub.load(str(ROOT), "aliked", source="local", variant="n16", max_keypoints=200)
    features = net.extract(EXAMPLE)
    assert features == keypoints.detect(EXAMPLE, "aliked-n16", max_keypoints=200)[0]
    glue = torch.hub.load(str(ROOT), "lightglue", source="local", features="aliked")
    matches = keypoints.match(features, features, matcher=glue)
    assert len(matches) > 150  # an image against itself
