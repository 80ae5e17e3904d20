"""LightGlue with the real released weights: cvg's ALIKED and DISK weights and verlab's
LighterGlue, against cvg's own implementation (kornia's copy, in the test extra) loaded with the
same files; the bundled copies, offline; the known-unused keys of DISK's release."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import DATA, EXAMPLE, ROOT, cvg_reference, require

import keypoints
from keypoints.models.lightglue import BUNDLED, LightGlue, bundled_matcher, matcher_part

WEIGHTS = DATA / "weights"
GRAF = DATA / "homography" / "oxford_affine" / "graf"
BOAT = DATA / "homography" / "oxford_affine" / "boat"
#: two shared pairs: a viewpoint change and a zoom + rotation
PAIRS = [(GRAF / "img1.ppm", GRAF / "img2.ppm"), (BOAT / "img1.pgm", BOAT / "img2.pgm")]
#: verlab's LighterGlue configuration (kornia's LightGlue.features["xfeat"])
LIGHTERGLUE = dict(input_dim=64, descriptor_dim=96, n_layers=6, num_heads=1,
                   depth_confidence=-1, width_confidence=0.95)  # fmt: skip


def run_reference(model, f0, f1):
    """The reference's matches0 and matching_scores0 for two images' features."""
    data = [
        {
            "keypoints": f.keypoints[None],
            "descriptors": f.descriptors[None],
            "image_size": torch.tensor([f.image_size], dtype=torch.float32),
        }  # fmt: skip
        for f in (f0, f1)
    ]
    with torch.no_grad():
        out = model({"image0": data[0], "image1": data[1]})
    return out["matches0"][0], out["matching_scores0"][0]


def assert_same_matches(ours: keypoints.Matches, expected, minimum: int) -> None:
    """Identical match sets, scores within 1e-4."""
    m0, s0 = expected
    valid = torch.nonzero(m0 > -1)[:, 0]
    assert len(ours) == len(valid) >= minimum
    assert torch.equal(ours.indices, torch.stack([valid, m0[valid]], 1))
    torch.testing.assert_close(ours.scores, s0[valid], atol=1e-4, rtol=0)


def features(model: str, pair, **options):
    return keypoints.detect([str(p) for p in pair], model, resize=None, **options)


@pytest.mark.parametrize("pair", PAIRS, ids=["graf", "boat"])
def test_aliked_release_equals_cvg(pair):
    """cvg's aliked_lightglue.pth (fp32 file): our matches equal cvg's code on ALIKED-n16."""
    path = require(WEIGHTS / "lightglue" / "aliked_lightglue.pth")
    f0, f1 = features("aliked-n16", pair, max_keypoints=1024, threshold=0.0)
    ours = keypoints.match(f0, f1, "lightglue", matcher=str(path))
    assert ours.method == "lightglue"
    expected = run_reference(cvg_reference(torch.load(path, weights_only=True)), f0, f1)
    assert_same_matches(ours, expected, 100)


@pytest.mark.parametrize("pair", PAIRS, ids=["graf", "boat"])
def test_disk_release_equals_cvg(pair):
    """cvg's disk_lightglue.pth, with its nine unused ``log_assignment.{i}.r`` entries: loaded,
    and our matches on DISK features equal cvg's code."""
    path = require(WEIGHTS / "lightglue" / "disk_lightglue.pth")
    f0, f1 = features("disk", pair, max_keypoints=1024)
    ours = keypoints.match(f0, f1, "lightglue", matcher=str(path))
    expected = run_reference(cvg_reference(torch.load(path, weights_only=True)), f0, f1)
    assert_same_matches(ours, expected, 100)


@pytest.mark.parametrize("pair", PAIRS, ids=["graf", "boat"])
def test_lighterglue_equals_reference(pair):
    """verlab's xfeat-lighterglue.pt (matcher half): the bundled copy (fp32) and the file give
    the same matches as the reference LightGlue code with LighterGlue's configuration."""
    path = require(WEIGHTS / "xfeat" / "xfeat-lighterglue.pt")
    f0, f1 = features("xfeat", pair, max_keypoints=1024)
    ours = keypoints.match(f0, f1)  # auto: XFeat's bundled LighterGlue
    assert ours.method == "lightglue"
    by_path = keypoints.match(f0, f1, "lightglue", matcher=str(path))
    expected = run_reference(
        cvg_reference(torch.load(path, weights_only=True), **LIGHTERGLUE), f0, f1
    )
    assert_same_matches(ours, expected, 50)
    assert_same_matches(by_path, expected, 50)


def test_bundled_fp16_aliked_weights_agree_with_the_fp32_release():
    """The bundled fp16 copy of aliked_lightglue.pth gives >= 99.5% of the fp32 matches."""
    path = require(WEIGHTS / "lightglue" / "aliked_lightglue.pth")
    same = union = 0
    for pair in PAIRS:
        f0, f1 = features("aliked-n16", pair, max_keypoints=1024, threshold=0.0)
        full = {tuple(r) for r in keypoints.match(f0, f1, matcher=str(path)).indices.tolist()}
        half = {tuple(r) for r in keypoints.match(f0, f1, "lightglue").indices.tolist()}
        same, union = same + len(full & half), union + len(full | half)
    assert union > 500 and same / union >= 0.995


def test_bundled_weights_are_the_release():
    """Each bundled file is the release it names: same tensors as converting the shared file."""
    from safetensors import safe_open

    from keypoints.models.lightglue import convert_cvg_state_dict

    sources = {"aliked": WEIGHTS / "lightglue" / "aliked_lightglue.pth",
               "xfeat-lighterglue": WEIGHTS / "xfeat" / "xfeat-lighterglue.pt"}  # fmt: skip
    for name in BUNDLED:
        state = convert_cvg_state_dict(
            matcher_part(torch.load(require(sources[name]), weights_only=True))
        )
        with safe_open(str(bundled_matcher(name)), "pt") as bundled:
            assert set(bundled.keys()) == set(state)
            for key in state:
                stored = bundled.get_tensor(key)
                torch.testing.assert_close(stored.float(), state[key].to(stored.dtype).float())


def test_unknown_keys_are_refused_known_unused_ones_accepted(tmp_path):
    path = require(WEIGHTS / "lightglue" / "disk_lightglue.pth")
    state = torch.load(path, weights_only=True)
    assert sum(k.endswith(".r") for k in state) == 9
    assert LightGlue.from_pretrained(path).config.input_dim == 128
    state["log_assignment.0.temperature"] = torch.ones(1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(keypoints.WeightsError, match="unexpected key 'log_assignment.0.temp"):
        LightGlue.from_pretrained(tmp_path / "odd.pth")


def test_auto_picks_lightglue_only_where_weights_are_offline(tmp_path, monkeypatch):
    """method="auto": LightGlue for ALIKED-n16 (bundled), mutual nearest neighbour for SIFT
    (its release is not cached here) and for ALIKED-t16 (no weights trained on it)."""
    monkeypatch.setenv("KEYPOINTS_CACHE", str(tmp_path))
    from keypoints.matching import resolve_method

    for model, method in (("aliked-n16", "lightglue"), ("sift", "mnn"), ("aliked-t16", "mnn")):
        f = keypoints.detect(str(EXAMPLE), model, max_keypoints=100)[0]
        assert resolve_method("auto", [(f, f)]) == method
        assert keypoints.match(f, f).method == method
    f = keypoints.detect(str(EXAMPLE), "aliked-t16", max_keypoints=100)[0]
    with pytest.raises(keypoints.ConfigError, match="unknown matching method 'lightgleu'"):
        keypoints.match(f, f, "lightgleu")


def test_bundled_lightglue_offline_with_an_empty_cache(tmp_path):
    """HF_HUB_OFFLINE=1 and an empty cache: the bundled weights load, and `keypoints match` on
    the example pair uses LightGlue by default."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KEYPOINTS_CACHE": str(tmp_path / "cache")}
    code = "from keypoints.matching import load_matcher; print(load_matcher('aliked').features)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "aliked", out.stderr
    warped = ROOT / "examples" / "cats_warped.jpg"
    run = subprocess.run([sys.executable, "-m", "keypoints", "match", str(EXAMPLE), str(warped),
                          "-o", str(tmp_path / "m.png")], env=env, capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "(LightGlue)" in run.stdout
    assert not list((tmp_path / "cache").rglob("*lightglue*"))  # nothing downloaded


def matched_points(k0, k1, m0) -> set[tuple[float, ...]]:
    """A match set as keypoint coordinates rounded to 0.01 px (independent of keypoint order)."""
    valid = torch.nonzero(m0 > -1)[:, 0]
    pairs = torch.cat([k0[valid], k1[m0[valid]]], 1)
    return {tuple(round(float(v), 2) for v in row) for row in pairs}


@pytest.mark.slow
def test_default_pipeline_fp32_matches_equal_the_reference_on_graf():
    """The default pipeline end to end in parity mode (what bench_pipeline.py times):
    ALIKED-n16rot, 2048 keypoints, native size, then LightGlue from cvg's fp32 release file,
    gives exactly cvg's matches on the same features (the detector equals Shiaoming's reference
    code to 1.2e-4 px: tests/test_aliked.py; kornia's ALIKED is not the reference, it keeps
    different maxima)."""
    path = require(WEIGHTS / "lightglue" / "aliked_lightglue.pth")
    name = keypoints.defaults.DEFAULT_MODEL
    f0, f1 = features(name, PAIRS[0], max_keypoints=2048, threshold=0.0)
    assert len(f0) == len(f1) == 2048
    ours = keypoints.match(f0, f1, "lightglue", matcher=str(path))
    expected = run_reference(cvg_reference(torch.load(path, weights_only=True)), f0, f1)
    assert_same_matches(ours, expected, 500)


@pytest.mark.slow
def test_disk_pipeline_fp32_equals_kornia_end_to_end_on_graf():
    """DISK + LightGlue end to end against the reference implementation run from the pixels
    (kornia's DISK, then cvg's LightGlue code, same released weights): the same match set."""
    kornia = pytest.importorskip("kornia")
    from keypoints.image import to_array, to_float

    release = require(WEIGHTS / "disk" / "disk-depth-save.pth")
    path = require(WEIGHTS / "lightglue" / "disk_lightglue.pth")
    disk = kornia.feature.DISK()
    disk.load_state_dict(torch.load(release, map_location="cpu", weights_only=True)["extractor"])
    data = {}
    for side, image in enumerate(PAIRS[0]):
        pixels = torch.from_numpy(to_float(to_array(str(image)))).permute(2, 0, 1)[None]
        with torch.inference_mode():
            found = disk.eval()(pixels, n=2048, pad_if_not_divisible=True)[0]
        data[f"image{side}"] = {
            "keypoints": found.keypoints[None].float(),
            "descriptors": found.descriptors[None],
            "image_size": torch.tensor([pixels.shape[:1:-1]], dtype=torch.float32),
        }
    with torch.inference_mode():
        out = cvg_reference(torch.load(path, weights_only=True))(data)
    k0, k1 = data["image0"]["keypoints"][0], data["image1"]["keypoints"][0]
    expected = matched_points(k0, k1, out["matches0"][0])

    f0, f1 = features("disk", PAIRS[0], max_keypoints=2048)
    ours = keypoints.match(f0, f1, "lightglue", matcher=str(path))
    m0 = torch.full((len(f0),), -1, dtype=torch.long)
    m0[ours.indices[:, 0]] = ours.indices[:, 1]
    assert len(expected) > 500
    assert matched_points(f0.keypoints, f1.keypoints, m0) == expected
