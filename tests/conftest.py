"""Shared fixtures. Tests never touch the network: the Hub is put in offline mode before any
import of huggingface_hub, and real data is read from ../shared/data beside the repo."""

from __future__ import annotations

import os
import tempfile  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# downloads and exported ONNX graphs go to a throw-away cache, not the user's
os.environ["KEYPOINTS_CACHE"] = tempfile.mkdtemp(prefix="keypoints-test-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EXAMPLE = ROOT / "examples" / "cats.png"
COCO = [
    DATA / "images" / "coco" / "000000039769.png",
    DATA / "images" / "coco" / "000000004016.png",
]
PARTIAL_SUPERPOINT = (
    DATA / "weights" / "superpoint_partial" / "superpoint_v1_encoder_descriptor.safetensors"
)


def require(path: Path) -> Path:
    """Skip (with the reason) when a file of ../shared/data is absent."""
    if not path.exists():
        pytest.skip(f"test data not found: {path} (expected ../shared/data beside the repo)")
    return path


def random_superpoint(cls=None, seed: int = 0, sharpen: float = 10.0, **config):
    """A randomly initialised SuperPoint that behaves like a detector: He-normal weights and
    zero biases keep the features image-dependent, and the detector head's weights are scaled
    by ``sharpen`` so that scores spread over [0, 1] (with PyTorch's default init the heatmap
    is nearly flat and every cell yields one keypoint, which would test little)."""
    from keypoints import SuperPoint, SuperPointConfig

    torch.manual_seed(seed)
    model = (cls or SuperPoint)(SuperPointConfig(**config))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                module.bias.zero_()
        model.convPb.weight.mul_(sharpen)
    return model.eval()


@pytest.fixture(scope="session")
def coco_images():
    from PIL import Image

    return [Image.open(require(p)).convert("RGB") for p in COCO]


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A Hub-layout folder (config.json, model.safetensors, preprocessor_config.json) holding a
    random SuperPoint; stands in for the real checkpoint, which cannot be downloaded here."""
    from keypoints import SuperPointForKeypointDetection, SuperPointImageProcessor

    directory = tmp_path_factory.mktemp("random_superpoint")
    random_superpoint(SuperPointForKeypointDetection).save_pretrained(directory)
    SuperPointImageProcessor().save_pretrained(directory)
    return directory


def assert_batch_equals_singles(model, images: torch.Tensor, **options) -> None:
    """A learned model's batched forward gives each image's keypoints and descriptors alone."""
    with torch.inference_mode():
        batched = model(images, **options)
        for i in range(len(images)):
            single = model(images[i : i + 1], **options)
            n = int(single["mask"].sum())
            assert int(batched["mask"][i].sum()) == n
            torch.testing.assert_close(batched["keypoints"][i, :n], single["keypoints"][0, :n])
            torch.testing.assert_close(
                batched["descriptors"][i, :n], single["descriptors"][0, :n], atol=1e-5, rtol=0
            )


def cvg_reference(state: dict, half: bool = False, **conf):
    """cvg's LightGlue (kornia's copy of cvg's code) holding a release ``state`` (cvg's layout).

    As cvg's loader: the matcher half of a combined file, the old per-layer prefixes renamed,
    the unused ``.r`` entries ignored. ``half`` rounds the weights through fp16, as the bundled
    copy stores them.
    """
    import re

    from keypoints.models.lightglue import matcher_part

    lightglue = pytest.importorskip("kornia.feature.lightglue")
    state = {
        re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v
        for k, v in matcher_part(state).items()
        if not k.endswith(".r")
    }
    conf.setdefault("input_dim", state["input_proj.weight"].shape[1])
    model = lightglue.LightGlue(features=None, flash=False, **conf)
    incompatible = model.load_state_dict(state, strict=False)
    assert not incompatible.unexpected_keys
    assert set(incompatible.missing_keys) <= {"confidence_thresholds"}
    if half:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.half().float())
    return model.eval()
