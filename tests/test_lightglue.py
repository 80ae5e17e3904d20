"""LightGlue matcher: parity with transformers' LightGlueForKeypointMatching on the same random
weights, with adaptive depth and width on and off, and batches of pairs with different keypoint
counts equal to each pair alone."""

from __future__ import annotations

import pytest
import torch
from conftest import DATA, EXAMPLE, random_superpoint, require

import keypoints
from keypoints.models.lightglue import LightGlueMatcher, LightGlueMatcherConfig

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
