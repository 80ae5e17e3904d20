"""LightGlue matcher: parity with transformers' LightGlueForKeypointMatching on the same random
weights, with adaptive depth and width on and off, and batches of pairs with different keypoint
counts equal to each pair alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DATA, EXAMPLE, cvg_reference, random_superpoint, require

import keypoints
from keypoints.models.lightglue import LightGlueMatcher, LightGlueMatcherConfig, release_file

transformers = pytest.importorskip("transformers")

# (depth_confidence, width_confidence, token-confidence bias, matchability bias): random
# heads are never confident, so the last case biases them to make pairs stop early and
# keypoints get pruned
CASES = {
    "adaptive off": (0.0, 0.0, 0.0, 0.0),
    "adaptive on, nothing triggers": (0.95, 0.99, 0.0, 0.0),
    "adaptive on, early stops and pruning": (0.95, 0.99, 3.0, -2.0),
}


def twins(depth, width, token_bias, match_bias, detector=None):
    """transformers' model with random weights (the final projections set to a scaled identity,
    so that similar descriptors match and the matches are many and clear), and ours with the
    same numbers."""
    torch.manual_seed(0)
    config = transformers.LightGlueConfig(
        keypoint_detector_config=detector or transformers.SuperPointConfig(max_keypoints=512),
        depth_confidence=depth,
        width_confidence=width,
        filter_threshold=0.0,  # random weights give low scores: keep every mutual match
    )
    theirs = transformers.LightGlueForKeypointMatching(config).eval()
    with torch.no_grad():
        for layer in theirs.match_assignment_layers:
            layer.final_projection.weight.copy_(8 * torch.eye(256))
            layer.final_projection.bias.zero_()
        for layer in theirs.token_confidence:
            layer.token.bias.fill_(token_bias)
        for layer in theirs.match_assignment_layers:
            layer.matchability.bias.fill_(match_bias)
    ours = LightGlueMatcher(
        LightGlueMatcherConfig(depth_confidence=depth, width_confidence=width, filter_threshold=0.0)
    )
    state = {k: v for k, v in theirs.state_dict().items() if not k.startswith("keypoint_detector")}
    ours.load_state_dict(state, strict=True)
    return theirs, ours.eval()


@pytest.fixture(scope="module")
def pairs():
    """Two real pairs (Oxford graf 1-2, the cats and their warp), SuperPoint-like features from
    a random detector at 480x640, padded into one batch: keypoints (2, 2, N, 2), descriptors
    (2, 2, N, 256), mask (2, 2, N); the four images have different keypoint counts."""
    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    images = [graf / "img1.ppm", graf / "img2.ppm", EXAMPLE, EXAMPLE.parent / "cats_warped.jpg"]
    detector = random_superpoint(max_keypoints=400)
    features = keypoints.detect([str(p) for p in images], detector, resize=(480, 640))
    counts = [min(len(f), 400 - 60 * i) for i, f in enumerate(features)]  # all different
    assert len(set(counts)) == 4
    n = max(counts)
    kp = torch.zeros(4, n, 2)
    desc = torch.zeros(4, n, 256)
    mask = torch.zeros(4, n, dtype=torch.bool)
    for i, (f, count) in enumerate(zip(features, counts)):
        # in pixels of the 480x640 image the network saw, as transformers' model uses them
        scale = torch.tensor([640 / f.image_size[0], 480 / f.image_size[1]])
        kp[i, :count] = (f.keypoints[:count] + 0.5) * scale - 0.5
        desc[i, :count] = f.descriptors[:count]
        mask[i, :count] = True
    return kp.reshape(2, 2, n, 2), desc.reshape(2, 2, n, 256), mask.reshape(2, 2, n)


def run_theirs(model, kp, desc, mask):
    with torch.no_grad():
        matches, scores, prune, _, _ = model._match_image_pair(
            kp.clone(), desc, 480, 640, mask=mask.int()
        )
    batch, _, n, _ = kp.shape
    return (t.reshape(batch, 2, n) for t in (matches, scores, prune))


def run_ours(model, kp, desc, mask):
    sizes = torch.tensor([640, 480]).expand(kp.shape[0], 2, 2)
    with torch.no_grad():
        return model(kp, desc, sizes, mask)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("batch", [1, 2])
def test_parity_with_transformers(pairs, case, batch):
    kp, desc, mask = (t[:batch] for t in pairs)
    theirs, ours = twins(*CASES[case])
    expected = list(run_theirs(theirs, kp, desc, mask))
    got = list(run_ours(ours, kp, desc, mask))
    # on the real keypoints (transformers also reports "matches" between padding entries)
    assert torch.equal(got[0][mask], expected[0].long()[mask])  # identical match sets
    assert int((got[0] > -1).sum()) > 50  # not vacuous
    assert (got[0][~mask] == -1).all()
    torch.testing.assert_close(got[1][mask], expected[1][mask], atol=1e-4, rtol=0)
    assert torch.equal(got[2][mask], expected[2].long()[mask])  # layers each keypoint saw
    if case.endswith("pruning"):
        assert got[2][mask].float().mean() < ours.config.num_hidden_layers - 1


def test_mixed_counts_in_a_batch_equal_each_pair_alone(pairs):
    kp, desc, mask = pairs
    _, ours = twins(*CASES["adaptive on, early stops and pruning"])
    batched = run_ours(ours, kp, desc, mask)
    for i in range(2):
        n = int(mask[i].sum(-1).max())  # this pair alone, padded only to its own longest image
        alone = run_ours(ours, kp[i : i + 1, :, :n], desc[i : i + 1, :, :n], mask[i : i + 1, :, :n])
        for b, a in zip(batched, alone):
            torch.testing.assert_close(b[i : i + 1, :, :n], a, atol=1e-4, rtol=0)


def test_no_keypoints_and_config_errors():
    matcher = LightGlueMatcher().eval()
    out = run_ours(matcher, torch.zeros(1, 2, 0, 2), torch.zeros(1, 2, 0, 256),
                   torch.zeros(1, 2, 0, dtype=torch.bool))  # fmt: skip
    assert [t.shape for t in out] == [(1, 2, 0)] * 3
    with pytest.raises(keypoints.ConfigError, match="multiple of num_attention_heads"):
        LightGlueMatcher(descriptor_dim=250)


def test_model_facade_equals_transformers_end_to_end(pairs):
    """LightGlueForKeypointMatching(pixel_values) with transformers' random weights (detector
    included) loaded through our key mapping: the same matches, scores and prune counts."""
    from keypoints.hf_lightglue import LightGlueConfig, LightGlueForKeypointMatching
    from keypoints.models.superpoint import to_transformers_state_dict

    # no top-k cut (torch.topk orders equal scores arbitrarily): a threshold bounds the count
    detector = transformers.SuperPointConfig(keypoint_threshold=0.95)
    theirs, _ = twins(*CASES["adaptive on, early stops and pruning"], detector=detector)
    # a random detector that behaves like one (see conftest.random_superpoint)
    theirs.keypoint_detector.load_state_dict(to_transformers_state_dict(
        random_superpoint().state_dict()))  # fmt: skip
    config = LightGlueConfig.from_dict(
        {
            **theirs.config.to_dict(),
            "keypoint_detector_config": theirs.config.keypoint_detector_config.to_dict(),
        }  # fmt: skip
    )
    ours = LightGlueForKeypointMatching(config).eval()
    ours.load_weights(theirs.state_dict())
    processor = transformers.LightGlueImageProcessor()
    graf = DATA / "homography" / "oxford_affine" / "graf"
    from PIL import Image

    images = [[Image.open(graf / "img1.ppm"), Image.open(graf / "img3.ppm")],
              [Image.open(EXAMPLE), Image.open(EXAMPLE.parent / "cats_warped.jpg")]]  # fmt: skip
    inputs = processor(images, return_tensors="pt")
    with torch.no_grad():
        expected = theirs(**inputs)
    got = ours(inputs["pixel_values"])
    mask = expected.mask.bool()
    assert torch.equal(got.mask, expected.mask)
    assert torch.equal(got.keypoints, expected.keypoints)
    assert 100 < mask.sum(-1).min() and mask.sum(-1).max() < 3000
    assert torch.equal(got.matches[mask], expected.matches.long()[mask])
    assert int((got.matches > -1).sum()) > 50
    torch.testing.assert_close(got.matching_scores[mask], expected.matching_scores[mask],
                               atol=1e-4, rtol=0)  # fmt: skip
    assert torch.equal(got.prune[mask], expected.prune.long()[mask])


def test_processor_and_post_processing_equal_transformers():
    """LightGlueImageProcessor: the same pixel_values as transformers' for two pairs, and the
    same post-processed keypoints and scores for one output."""
    from PIL import Image

    from keypoints.hf_lightglue import LightGlueImageProcessor

    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    paths = [[graf / "img1.ppm", graf / "img3.ppm"], [EXAMPLE, EXAMPLE.parent / "cats_warped.jpg"]]
    images = [[Image.open(p).convert("RGB") for p in pair] for pair in paths]
    theirs, ours = transformers.LightGlueImageProcessor(), LightGlueImageProcessor()
    expected = theirs(images, return_tensors="pt")["pixel_values"]
    got = ours(images, return_tensors="pt")["pixel_values"]
    assert got.shape == expected.shape == (2, 2, 3, 480, 640)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    with pytest.raises(keypoints.ImageError, match="pair"):
        ours([images[0][0]])

    # a model output with matches, post-processed by both
    torch.manual_seed(0)
    n = 50
    output = transformers.models.lightglue.modeling_lightglue.LightGlueKeypointMatchingOutput(
        keypoints=torch.rand(2, 2, n, 2),
        mask=(torch.rand(2, 2, n) > 0.2).int(),
        matches=torch.randint(-1, n, (2, 2, n)),
        matching_scores=torch.rand(2, 2, n),
    )
    sizes = [[(im.height, im.width) for im in pair] for pair in images]
    for threshold in (0.0, 0.5):
        got = ours.post_process_keypoint_matching(output, sizes, threshold)
        expected = theirs.post_process_keypoint_matching(output, sizes, threshold)
        for g, e in zip(got, expected):
            assert g.keys() == e.keys()
            for key in g:
                assert torch.equal(g[key], e[key]), key
    pictures = ours.visualize_keypoint_matching(images, ours.post_process_keypoint_matching(
        output, sizes))  # fmt: skip
    assert pictures[0].size == (images[0][0].width + images[0][1].width,
                                max(images[0][0].height, images[0][1].height))  # fmt: skip


def test_from_pretrained_and_save_pretrained_round_trip_with_transformers(pairs, tmp_path):
    """A folder written by transformers loads into ours with the same numbers, and the folder we
    write loads into transformers; a Hub id not cached while offline gives the clear message."""
    from keypoints.hf_lightglue import LightGlueForKeypointMatching

    kp, desc, mask = pairs
    theirs, _ = twins(*CASES["adaptive on, early stops and pruning"])
    theirs.save_pretrained(tmp_path / "theirs")
    ours = LightGlueForKeypointMatching.from_pretrained(tmp_path / "theirs")
    assert ours.config.depth_confidence == 0.95 and ours.config.filter_threshold == 0.0
    expected = list(run_theirs(theirs, kp, desc, mask))
    sizes = torch.tensor([640, 480]).expand(kp.shape[0], 2, 2)
    with torch.no_grad():  # the matcher part of the facade
        got = LightGlueMatcher.forward(ours, kp, desc, sizes, mask)
    assert torch.equal(got[0][mask], expected[0].long()[mask])

    ours.save_pretrained(tmp_path / "ours")
    back = transformers.LightGlueForKeypointMatching.from_pretrained(tmp_path / "ours").eval()
    for key, value in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    assert back.config.keypoint_detector_config.max_keypoints == 512

    with pytest.raises(keypoints.WeightsNotFoundError, match="offline|HF_HUB_OFFLINE|cache"):
        LightGlueForKeypointMatching.from_pretrained("ETH-CVG/lightglue_superpoint")
    with pytest.raises(keypoints.WeightsNotFoundError, match="offline|HF_HUB_OFFLINE|cache"):
        keypoints.AutoModelForKeypointMatching.from_pretrained("ETH-CVG/lightglue_superpoint")

    # the Auto classes on a folder transformers wrote (model, config and processor)
    transformers.LightGlueImageProcessor().save_pretrained(tmp_path / "theirs")
    auto = keypoints.AutoModelForKeypointMatching.from_pretrained(tmp_path / "theirs")
    assert type(auto) is LightGlueForKeypointMatching
    assert type(keypoints.AutoConfig.from_pretrained(tmp_path / "theirs")).__name__ == (
        "LightGlueConfig"
    )
    processor = keypoints.AutoImageProcessor.from_pretrained(tmp_path / "theirs")
    assert type(processor) is keypoints.LightGlueImageProcessor
    with pytest.raises(keypoints.ConfigError, match="AutoModelForKeypointMatching"):
        keypoints.AutoModelForKeypointDetection.from_pretrained(tmp_path / "theirs")
    theirs.keypoint_detector.save_pretrained(tmp_path / "detector")
    with pytest.raises(keypoints.ConfigError, match="AutoModelForKeypointDetection"):
        keypoints.AutoModelForKeypointMatching.from_pretrained(tmp_path / "detector")


# cvg's checkpoints and LightGlue for our detectors ----------------------------------------------
def cvg_lightglue(input_dim=256, add_scale_ori=False, depth=0.0, width=0.0, token_bias=0.0,
                  match_bias=0.0):  # fmt: skip
    """cvg/LightGlue's own implementation and key layout (kornia's copy of it: fused ``Wqkv``,
    shared ``to_qk``, ``posenc.Wr``, ...) with random weights, final projections a scaled
    identity as in :func:`twins`; biases as in ``CASES``."""
    lightglue = pytest.importorskip("kornia.feature.lightglue")
    torch.manual_seed(1)
    model = lightglue.LightGlue(features=None, input_dim=input_dim, add_scale_ori=add_scale_ori,
                                depth_confidence=depth if depth > 0 else -1,
                                width_confidence=width if width > 0 else -1,
                                filter_threshold=0.0, flash=False)  # fmt: skip
    with torch.no_grad():
        for layer in model.log_assignment:
            layer.final_proj.weight.copy_(8 * torch.eye(256))
            layer.final_proj.bias.zero_()
            layer.matchability.bias.fill_(match_bias)
        for layer in model.token_confidence:
            layer.token[0].bias.fill_(token_bias)
    return model.eval()


def run_cvg(model, f0, f1, **extra):
    """cvg's forward on two images' (x, y) pixel keypoints, descriptors and (w, h) sizes."""
    data = [
        {
            "keypoints": f.keypoints[None],
            "descriptors": f.descriptors[None],
            "image_size": torch.tensor([f.image_size], dtype=torch.float32),
            **{k: v[i][None] for k, v in extra.items()},
        }
        for i, f in enumerate((f0, f1))
    ]
    with torch.no_grad():
        return model({"image0": data[0], "image1": data[1]})


@pytest.fixture(scope="module")
def graf_features():
    """SuperPoint-like features (random detector, 256-d) of Oxford graf 1 and 2."""
    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    detector = random_superpoint(max_keypoints=400)
    return keypoints.detect([str(graf / "img1.ppm"), str(graf / "img2.ppm")], detector)


@pytest.mark.parametrize("case", list(CASES))
def test_cvg_key_mapping_equals_the_original_and_transformers(graf_features, case):
    """A random state dict in cvg's layout: mapped by us, our model gives what cvg's own code
    gives on those weights, and so does transformers' model loaded with the mapped numbers."""
    from keypoints.models.lightglue import config_from_state_dict, convert_cvg_state_dict

    depth, width, token_bias, match_bias = CASES[case]
    original = cvg_lightglue(256, False, depth, width, token_bias, match_bias)
    state = convert_cvg_state_dict(original.state_dict())
    assert "transformer_layers.0.self_attention.q_proj.weight" in state
    config = config_from_state_dict(
        state, depth_confidence=depth, width_confidence=width, filter_threshold=0.0
    )
    assert (config.input_dim, config.num_hidden_layers, config.num_attention_heads) == (256, 9, 4)
    ours = LightGlueMatcher(config).eval()
    ours.load_state_dict(state, strict=True)
    theirs, _ = twins(depth, width, 0.0, 0.0)
    missing = theirs.load_state_dict(state, strict=False).missing_keys
    assert all(k.startswith("keypoint_detector.") for k in missing)

    f0, f1 = graf_features
    expected = run_cvg(original, f0, f1)
    n0, n1 = len(f0), len(f1)
    n = max(n0, n1)
    kp, desc = torch.zeros(1, 2, n, 2), torch.zeros(1, 2, n, 256)
    mask = torch.zeros(1, 2, n, dtype=torch.bool)
    for side, f in enumerate((f0, f1)):
        kp[0, side, : len(f)], desc[0, side, : len(f)] = f.keypoints, f.descriptors
        mask[0, side, : len(f)] = True
    sizes = torch.tensor(f0.image_size).expand(1, 2, 2)
    with torch.no_grad():
        got = ours(kp, desc, sizes, mask)
        # transformers normalises by one (height, width) for both images: graf's are equal
        assert f0.image_size == f1.image_size
        width_, height_ = f0.image_size
        via_transformers = theirs._match_image_pair(kp.clone(), desc, height_, width_,
                                                    mask=mask.int())  # fmt: skip
    assert torch.equal(got[0][0, 0, :n0], expected["matches0"][0])
    assert torch.equal(got[0][0, 1, :n1], expected["matches1"][0])
    assert int((got[0] > -1).sum()) > 50
    torch.testing.assert_close(got[1][0, 0, :n0], expected["matching_scores0"][0], atol=1e-4,
                               rtol=0)  # fmt: skip
    transformers_matches = via_transformers[0].reshape(1, 2, n)[0, 0, :n0].long()
    assert torch.equal(transformers_matches, expected["matches0"][0])
    if case.endswith("pruning"):
        assert expected["stop"] < 9 and got[2][0, 0, :n0].float().mean() < 8


REAL_WEIGHTS = DATA / "weights" / "lightglue"


def cvg_release(name, half=False, **conf):
    """cvg's own implementation (kornia's copy) with the real release file ``name``."""
    state = torch.load(require(REAL_WEIGHTS / f"{name}_lightglue.pth"), weights_only=True)
    return cvg_reference(state, half, **conf)


@pytest.fixture()
def cached_weights(tmp_path, monkeypatch):
    """keypoints' download cache holding SIFT's cvg-layout checkpoint (random numbers) under
    its release file name, so the name resolves offline; ALIKED's weights are bundled (cvg's
    real release, compared with cvg's code on the shared file). Returns name -> original."""
    monkeypatch.setenv("KEYPOINTS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from keypoints import matching

    monkeypatch.setattr(matching, "_MATCHERS", {})
    (tmp_path / "cache").mkdir()
    originals = {"aliked": cvg_release("aliked", half=True, filter_threshold=0.0)}
    originals["sift"] = cvg_lightglue(128, True, 0.95, 0.99, 3.0, -2.0)
    torch.save(originals["sift"].state_dict(), tmp_path / "cache" / release_file("sift"))
    return originals


def test_match_lightglue_picks_the_weights_of_the_features_model(cached_weights):
    """keypoints.match(method="lightglue") on ALIKED and SIFT features of a real pair: the
    release weights for each model (from the cache), SIFT as RootSIFT with scales and
    orientations, equal to cvg's own code on those weights."""
    from keypoints.models.opencv import rootsift

    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    paths = [str(graf / "img1.ppm"), str(graf / "img2.ppm")]
    for model, weights in (("aliked-n16", "aliked"), ("sift", "sift")):
        f0, f1 = keypoints.detect(paths, model, max_keypoints=500)
        matches = keypoints.match(f0, f1, method="lightglue", filter_threshold=0.0)
        extra = {}
        if model == "sift":
            assert f0.scales is not None and f0.orientations.abs().max() <= 2 * torch.pi
            extra = {"scales": [f0.scales, f1.scales], "oris": [f0.orientations, f1.orientations]}
            f0.descriptors, f1.descriptors = rootsift(f0.descriptors), rootsift(f1.descriptors)
        expected = run_cvg(cached_weights[weights], f0, f1, **extra)
        m0 = expected["matches0"][0]
        valid = torch.nonzero(m0 > -1)[:, 0]
        assert len(matches) == len(valid) > 50, model
        assert torch.equal(matches.indices, torch.stack([valid, m0[valid]], 1)), model
        torch.testing.assert_close(matches.scores, expected["matching_scores0"][0][valid],
                                   atol=1e-4, rtol=0)  # fmt: skip
        torch.testing.assert_close(matches.distances, 1 - matches.scores)


def test_match_batch_of_mixed_counts_equals_each_pair_alone(cached_weights):
    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    images = [graf / "img1.ppm", graf / "img2.ppm", EXAMPLE, EXAMPLE.parent / "cats_warped.jpg"]
    features = [
        keypoints.detect(str(p), "aliked-n16", max_keypoints=450 - 70 * i)[0]
        for i, p in enumerate(images)
    ]
    pairs = [(features[0], features[1]), (features[2], features[3]), (features[3], features[0])]
    batched = keypoints.match_batch(pairs, "lightglue", batch_size=3, filter_threshold=0.0)
    for pair, got in zip(pairs, batched):
        alone = keypoints.match(*pair, method="lightglue", filter_threshold=0.0)
        assert torch.equal(got.indices, alone.indices)
        torch.testing.assert_close(got.scores, alone.scores, atol=1e-4, rtol=0)
    assert len(batched[0]) > 20


def test_lightglue_errors(cached_weights, graf_features):
    f0, f1 = graf_features  # model "superpoint": its weights are not in this cache
    with pytest.raises(keypoints.WeightsNotFoundError, match="offline"):
        keypoints.match(f0, f1, method="lightglue")
    t16 = keypoints.detect(str(EXAMPLE), "aliked-t16", max_keypoints=50)[0]
    with pytest.raises(keypoints.ConfigError, match="no released LightGlue weights.*aliked-t16"):
        keypoints.match(t16, t16, method="lightglue")
    with pytest.raises(keypoints.ConfigError, match="128-d float descriptors cannot match"):
        keypoints.match(t16, t16, method="lightglue", matcher="aliked")
    with pytest.raises(keypoints.ConfigError, match="different models"):
        keypoints.match(f0, t16, method="lightglue")
    with pytest.raises(keypoints.ConfigError, match="nearest-neighbour option"):
        keypoints.match(f0, f1, method="lightglue", ratio=0.8)
    with pytest.raises(keypoints.ConfigError, match="unknown LightGlue option 'depth'"):
        keypoints.match(t16, t16, method="lightglue", matcher="aliked", depth=0.5)
    empty = keypoints.Features(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, 128), (9, 9),
                               model="aliked-n16")  # fmt: skip
    assert len(keypoints.match(empty, empty, method="lightglue")) == 0
    empty.model = None  # e.g. a features file written by another tool
    with pytest.raises(keypoints.ConfigError, match="do not say which model.*--matcher-weights"):
        keypoints.match(empty, empty, method="lightglue")


def test_cli_match_match_pairs_and_eval_with_lightglue(cached_weights, tmp_path, capsys):
    """`keypoints match --matcher lightglue`, `match-pairs --matcher lightglue` (hloc layout,
    LightGlue's scores stored) and `eval homography --matcher lightglue`, equal to the API."""
    import json

    import h5py

    from keypoints.cli import main
    from keypoints.io.hloc import read_features

    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    img1, img2 = str(graf / "img1.ppm"), str(graf / "img2.ppm")
    assert main(["match", img1, img2, "--model", "aliked-n16", "--max-keypoints", "300",
                 "--resize", "none", "--matcher", "lightglue", "-o",
                 str(tmp_path / "m.png")]) == 0  # fmt: skip
    f0, f1 = keypoints.detect([img1, img2], "aliked-n16", max_keypoints=300)
    expected = keypoints.match(f0, f1, method="lightglue")
    assert f"matches: {len(expected)} (LightGlue)" in capsys.readouterr().out
    assert (tmp_path / "m.png").stat().st_size > 0

    features = tmp_path / "features.h5"
    keypoints.extract(graf, features, model="aliked-n16", max_keypoints=300, progress=False)
    out = tmp_path / "matches.h5"
    assert main(["match-pairs", str(features), "--exhaustive", "--matcher", "lightglue",
                 "--batch-size", "4", "-o", str(out)]) == 0  # fmt: skip
    names = ["img1.ppm", "img2.ppm", "img3.ppm"]
    feats = [read_features(features, n) for n in names]
    with h5py.File(out, "r") as f:
        assert len([1 for a in f for _ in f[a]]) == 15  # 6 images, exhaustive
        for (i, a), (j, b) in [((0, names[0]), (1, names[1])), ((1, names[1]), (2, names[2]))]:
            m = keypoints.match(feats[i], feats[j], method="lightglue", filter_threshold=0.1)
            group = f[f"{a}/{b}"]
            matches0 = group["matches0"][()]
            assert np.array_equal(np.flatnonzero(matches0 > -1), m.indices[:, 0].numpy())
            assert np.array_equal(matches0[matches0 > -1], m.indices[:, 1].numpy())
            stored = group["matching_scores0"][()][m.indices[:, 0].numpy()]
            np.testing.assert_allclose(stored, m.scores.numpy(), atol=1e-3)

    results = tmp_path / "results"
    assert main(["eval", "homography", str(graf), "--models", "aliked-n16", "--max-keypoints",
                 "300", "--matcher", "lightglue", "--rotation", "none", "-o",
                 str(results)]) == 0  # fmt: skip
    assert "matcher=LightGlue" in capsys.readouterr().out
    metrics = json.loads((results / "metrics.json").read_text())["aliked-n16"]
    counts = []
    for k in range(2, 7):
        fk = keypoints.detect(str(graf / f"img{k}.ppm"), "aliked-n16", max_keypoints=300)[0]
        counts.append(len(keypoints.match(f0, fk, method="lightglue")))
    assert metrics["matches"] == pytest.approx(np.mean(counts)) and metrics["pairs"] == 5
    assert main(["match", img1, img2, "--matcher", "lightglue", "--model", "aliked-t16"]) == 2
    assert "no released LightGlue weights" in capsys.readouterr().err


def test_bf16_matches_agree_with_fp32(cached_weights):
    """precision="bf16" (transformer layers under bfloat16 autocast, all 9 layers run): the
    match set agrees with fp32's to within a few percent; scores stay fp32."""
    from keypoints.matching import load_matcher
    from keypoints.models.backends import cpu_has_bf16

    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    f0, f1 = keypoints.detect([str(graf / "img1.ppm"), str(graf / "img2.ppm")], "aliked-n16",
                              max_keypoints=500)  # fmt: skip
    options = dict(depth_confidence=-1, width_confidence=-1, filter_threshold=0.0)
    full = keypoints.match(f0, f1, method="lightglue", **options)
    fast = keypoints.match(f0, f1, method="lightglue", precision="bf16", **options)
    assert load_matcher("aliked", precision="bf16").precision == (
        "bf16" if cpu_has_bf16() else "fp32"
    )
    a = {tuple(r) for r in full.indices.tolist()}
    b = {tuple(r) for r in fast.indices.tolist()}
    assert len(a) > 50 and len(a & b) / len(a | b) > 0.9
    assert fast.scores.dtype == torch.float32
    with pytest.raises(keypoints.ConfigError, match="precision"):
        keypoints.match(f0, f1, "mnn", precision="bf16")


def test_facade_from_cvg_checkpoint(tmp_path, monkeypatch, random_checkpoint):
    """LightGlueForKeypointMatching.from_pretrained on cvg's superpoint_lightglue.pth (by path
    or release name, from the cache): the matcher's keys mapped, SuperPoint from `detector`
    with transformers' conversion settings; weights for other features are refused."""
    from keypoints.hf_lightglue import LightGlueForKeypointMatching
    from keypoints.models.lightglue import convert_cvg_state_dict

    original = cvg_lightglue(256, False)
    path = tmp_path / "superpoint_lightglue.pth"
    torch.save(original.state_dict(), path)
    model = LightGlueForKeypointMatching.from_pretrained(path, detector=random_checkpoint)
    state = model.state_dict()
    for key, value in convert_cvg_state_dict(original.state_dict()).items():
        assert torch.equal(state[key], value), key
    detector = keypoints.SuperPoint.from_pretrained(random_checkpoint)
    assert torch.equal(state["keypoint_detector.convDb.weight"], detector.convDb.weight)
    assert model.config.keypoint_detector_config["max_keypoints"] == 2048
    pixel_values = keypoints.LightGlueImageProcessor()(
        [str(EXAMPLE), str(EXAMPLE.parent / "cats_warped.jpg")], return_tensors="pt"
    )["pixel_values"]
    out = model(pixel_values)
    assert out.matches.shape == out.mask.shape and out.matches.shape[:2] == (1, 2)

    monkeypatch.setenv("KEYPOINTS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    path.rename(tmp_path / "cache" / "superpoint_lightglue_v0-1_arxiv.pth")
    by_name = LightGlueForKeypointMatching.from_pretrained("superpoint", detector=random_checkpoint)
    assert torch.equal(by_name.state_dict()["positional_encoder.projector.weight"],
                       original.state_dict()["posenc.Wr.weight"])  # fmt: skip
    torch.save(cvg_lightglue(128, True).state_dict(), tmp_path / "sift_lightglue.pth")
    with pytest.raises(keypoints.ConfigError, match="other features than SuperPoint"):
        LightGlueForKeypointMatching.from_pretrained(tmp_path / "sift_lightglue.pth")
