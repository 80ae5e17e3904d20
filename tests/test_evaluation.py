"""Homography evaluation: metrics on analytic cases, dataset readers, and the eval command on
the Oxford affine sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EXAMPLE
from PIL import Image

import keypoints
from keypoints import DatasetError, Features
from keypoints.evaluation import (
    corner_error,
    homography_accuracy,
    homography_auc,
    load_dataset,
    matching_accuracy,
    repeatability,
    warp_points,
)

SIZE = (640, 480)  # the cats image, (width, height)
WARPS = {
    "identity": np.eye(3),
    "similarity": np.array([[0.8, -0.1, 40.0], [0.1, 0.8, 30.0], [0.0, 0.0, 1.0]]),
    "perspective": np.array([[0.9, 0.05, 20.0], [-0.03, 0.95, 10.0], [1e-4, -5e-5, 1.0]]),
}


def warped_pair(H, shift=0.0):
    """Real keypoints of the cats image and their exact images under H (kept where they land
    inside the second image), with identical descriptors."""
    f0 = keypoints.detect(str(EXAMPLE), "sift", max_keypoints=300)[0]
    k0 = f0.keypoints.numpy().astype(np.float64)
    k1 = warp_points(k0, H)
    inside = (
        (k1[:, 0] >= 0) & (k1[:, 0] <= SIZE[0] - 1) & (k1[:, 1] >= 0) & (k1[:, 1] <= SIZE[1] - 1)
    )
    k0, k1 = k0[inside], k1[inside] + shift
    desc = f0.descriptors[torch.from_numpy(inside)]
    a = Features(torch.from_numpy(k0).float(), torch.ones(len(k0)), desc, SIZE)
    b = Features(torch.from_numpy(k1).float(), torch.ones(len(k1)), desc.clone(), SIZE)
    return a, b


@pytest.mark.parametrize("name", list(WARPS))
def test_exact_keypoints_give_perfect_scores(name):
    H = WARPS[name]
    a, b = warped_pair(H)
    m = keypoints.match(a, b)
    assert len(m) == len(a) > 100
    k0, k1 = a.keypoints.double().numpy(), b.keypoints.double().numpy()
    np.testing.assert_allclose(matching_accuracy(k0, k1, m.indices.numpy(), H), np.ones(10))
    assert repeatability(k0, k1, H, SIZE, SIZE) == pytest.approx(1.0)
    fit = keypoints.verify(a, b, m, "homography", 3.0)
    assert corner_error(fit.matrix, H, SIZE) < 0.1


def test_shifted_keypoints_and_wrong_homography():
    H = WARPS["similarity"]
    a, b = warped_pair(H, shift=np.array([2.0, 0.0]))
    m = keypoints.match(a, b)
    mma = matching_accuracy(
        a.keypoints.double().numpy(), b.keypoints.double().numpy(), m.indices.numpy(), H
    )
    assert mma[0] == 0 and (mma[2:] == 1).all()  # 2 px off: wrong at 1 px, right from 3 px
    wrong = H.copy()
    wrong[:2, 2] += 50
    errors = [corner_error(wrong, H, SIZE), corner_error(None, H, SIZE)]
    assert errors[0] == pytest.approx(50 * np.sqrt(2)) and errors[1] == float("inf")
    assert homography_accuracy(errors) == {"1": 0.0, "3": 0.0, "5": 0.0, "10": 0.0}
    assert homography_auc(errors)["10"] == 0.0


def test_accuracy_and_auc_on_known_errors():
    assert homography_accuracy([0.5, 2.0, 4.0, float("inf")]) == {
        "1": 0.25,
        "3": 0.5,
        "5": 0.75,
        "10": 0.75,
    }
    assert homography_auc([0.0, 0.0]) == {"1": 1.0, "3": 1.0, "5": 1.0, "10": 1.0}
    # errors 0 and 2 px: the cumulative curve (SuperGlue's, linear between errors) goes through
    # (0, 0), (0, 0.5), (2, 1), (4, 1): area (0.5 + 1) / 2 * 2 + 1 * 2 = 3.5, over 4
    assert homography_auc([0.0, 2.0], thresholds=(4,))["4"] == pytest.approx(3.5 / 4)


def write_pgm(path, size=(40, 30)):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8)).save(
        path
    )


def make_hpatches(root):
    for seq in ("i_lamp", "v_wall"):
        (root / seq).mkdir(parents=True)
        for k in (1, 2, 3):
            write_pgm(root / seq / f"{k}.ppm")
        for k in (2, 3):
            np.savetxt(root / seq / f"H_1_{k}", np.eye(3))


def test_readers_for_both_layouts(tmp_path):
    make_hpatches(tmp_path / "hp")
    sequences = load_dataset(tmp_path / "hp")
    assert [(s.name, s.subset, len(s.pairs)) for s in sequences] == [
        ("i_lamp", "illumination", 2),
        ("v_wall", "viewpoint", 2),
    ]
    ox = tmp_path / "ox" / "boat"
    ox.mkdir(parents=True)
    for k in (1, 2):
        write_pgm(ox / f"img{k}.pgm")
    np.savetxt(ox / "H1to2p", np.diag([2.0, 2.0, 1.0]))
    (seq,) = load_dataset(tmp_path / "ox")
    assert seq.name == "boat" and seq.pairs[0].path1.name == "img2.pgm"
    np.testing.assert_array_equal(seq.pairs[0].homography, np.diag([2.0, 2.0, 1.0]))
    assert load_dataset(ox)[0].name == "boat"  # a sequence folder on its own
    assert seq.subset == "zoom+rotation"  # boat and bark zoom and rotate (graf, wall: viewpoint)


def test_reader_errors_name_the_file(tmp_path):
    make_hpatches(tmp_path)
    (tmp_path / "v_wall" / "H_1_3").unlink()
    with pytest.raises(DatasetError, match=r"v_wall.H_1_3' is missing"):
        load_dataset(tmp_path)
    (tmp_path / "v_wall" / "3.ppm").unlink()  # now the sequence simply ends at 2
    assert len(load_dataset(tmp_path)[1].pairs) == 1
    (tmp_path / "v_wall" / "2.ppm").unlink()
    with pytest.raises(DatasetError, match=r"v_wall.2' .* is missing"):
        load_dataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no sequences found.*hpatches-sequences-release"):
        load_dataset(empty)
    with pytest.raises(DatasetError, match="does not exist.*keypoints download --datasets"):
        load_dataset(tmp_path / "nothing-here")


def test_singular_ground_truth_is_refused(tmp_path, capsys):
    """A singular homography cannot be inverted for the two-way metrics: refused naming it
    (the CLI once ended in an unexpected LinAlgError)."""
    from keypoints.cli import main

    ox = tmp_path / "ox" / "boat"
    ox.mkdir(parents=True)
    for k in (1, 2):
        write_pgm(ox / f"img{k}.pgm")
    np.savetxt(ox / "H1to2p", np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(DatasetError, match=r"H1to2p' is singular"):
        load_dataset(tmp_path / "ox")
    assert main(["eval", "homography", str(tmp_path / "ox"), "-o", str(tmp_path / "r")]) == 2
    assert "is singular (not invertible)" in capsys.readouterr().err


def test_every_pipeline_is_checked_before_any_image_is_read(tmp_path, monkeypatch):
    """A missing weight, an unknown estimator or rotation fail before the first detection (so
    no finished result is lost to a later pipeline's missing weight)."""
    import json

    from conftest import DATA, require

    from keypoints.evaluation import homography

    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    monkeypatch.setenv("KEYPOINTS_CACHE", str(tmp_path / "cache"))

    def no_detection(*args, **kwargs):
        raise AssertionError("an image was read before every pipeline was checked")

    with monkeypatch.context() as patch:
        patch.setattr(homography, "detect", no_detection)
        with pytest.raises(keypoints.WeightsNotFoundError):  # SIFT's LightGlue: not cached
            homography.evaluate_homography(graf, ["xfeat", "sift"], matcher="lightglue")
        with pytest.raises(keypoints.ConfigError, match="unknown estimator 'poslib'"):
            homography.evaluate_homography(graf, ["orb"], estimator="poslib")
        with pytest.raises(keypoints.ConfigError, match="unknown rotation"):
            homography.evaluate_homography(graf, ["orb"], rotation="sometimes")

    # the report is rewritten after each pipeline: the first survives the second's failure
    real = homography._evaluate

    def second_fails(pipeline, *args):
        if pipeline.name == "sift":
            raise RuntimeError("interrupted")
        return real(pipeline, *args)

    monkeypatch.setattr(homography, "_evaluate", second_fails)
    with pytest.raises(RuntimeError, match="interrupted"):
        homography.evaluate_homography(graf, ["orb", "sift"], output=tmp_path / "out")
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(written) == ["orb"] and written["orb"]["pairs"] == 5
    settings = written["orb"]["settings"]
    assert settings["estimator"] == "poselib" and settings["keypoints_version"]
    assert settings["models"] == ["orb", "sift"] and settings["pairs"] == 5
    assert settings["max_keypoints"] == 2048 and settings["resize"] is None
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.startswith("settings: dataset=") and "max_keypoints=2048" in summary
    assert "PoseLib LO-RANSAC 2.0 px" in summary.splitlines()[0]
    assert set(written["orb"]["sequences"]) == {"graf"} and written["orb"]["matcher"] == "mnn"
