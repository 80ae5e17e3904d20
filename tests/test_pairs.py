"""Pairs and match-pairs: hloc's pairs and matches layouts, equality with keypoints.match."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from conftest import DATA, require

import keypoints
from keypoints.io.hloc import list_names, pair_name, read_features, read_matches
from keypoints.pipeline import (
    exhaustive_pairs,
    match_pairs,
    read_pairs,
    sequential_pairs,
    write_pairs,
)


def test_pair_lists(tmp_path):
    names = ["a", "b", "c", "d"]
    assert exhaustive_pairs(names) == [
        ("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d"),
    ]  # fmt: skip
    assert sequential_pairs(names, 2) == [("a", "b"), ("a", "c"), ("b", "c"), ("b", "d"),
                                          ("c", "d")]  # fmt: skip
    path = write_pairs(sequential_pairs(names, 1), tmp_path / "pairs.txt")
    assert path.read_text() == "a b\nb c\nc d\n"
    assert read_pairs(path) == [("a", "b"), ("b", "c"), ("c", "d")]
    with pytest.raises(keypoints.ConfigError, match=">= 1"):
        sequential_pairs(names, 0)
    (tmp_path / "bad.txt").write_text("a b\nonly-one\n")
    with pytest.raises(keypoints.ConfigError, match="bad.txt:2"):
        read_pairs(tmp_path / "bad.txt")
    assert pair_name("x/1.jpg", "y/2.jpg") == "x-1.jpg/y-2.jpg"  # hloc's names_to_pair


@pytest.fixture(scope="module")
def features_file(tmp_path_factory):
    """Features of the Oxford graf sequence (img1..img4), in a nested folder."""
    tmp = tmp_path_factory.mktemp("pairs")
    graf = require(DATA / "homography" / "oxford_affine" / "graf")
    (tmp / "images" / "graf").mkdir(parents=True)
    for i in range(1, 5):
        source = next(graf.glob(f"img{i}.*"))
        shutil.copy(source, tmp / "images" / "graf" / source.name)
    output = tmp / "features.h5"
    keypoints.extract(tmp / "images", output, "aliked-t16", resize=480, max_keypoints=500,
                      progress=False)  # fmt: skip
    return output


def test_match_pairs_matches_keypoints_match(features_file, tmp_path):
    names = list_names(features_file)
    assert len(names) == 4 and all(n.startswith("graf/") for n in names)
    pairs = exhaustive_pairs(names)
    output, matched, skipped = match_pairs(features_file, pairs, tmp_path / "m.h5",
                                           progress=False)  # fmt: skip
    assert (matched, skipped) == (6, 0)
    with h5py.File(output, "r") as f:
        for a, b in pairs:
            group = f[pair_name(a, b)]
            f0, f1 = read_features(features_file, a), read_features(features_file, b)
            expected = keypoints.match(f0, f1)
            matches0 = group["matches0"][()]
            assert matches0.shape == (len(f0),)
            valid = matches0 > -1
            assert valid.sum() == len(expected) > 50
            np.testing.assert_array_equal(np.flatnonzero(valid), expected.indices[:, 0].numpy())
            np.testing.assert_array_equal(matches0[valid], expected.indices[:, 1].numpy())
            scores = group["matching_scores0"][()]
            assert (scores[valid] > 0).all() and (scores[~valid] == 0).all()
    forward = read_matches(output, names[0], names[1])
    expected = keypoints.match(read_features(features_file, names[0]),
                               read_features(features_file, names[1]))  # fmt: skip
    np.testing.assert_array_equal(forward, expected.indices.numpy())
    np.testing.assert_array_equal(read_matches(output, names[1], names[0]), forward[:, ::-1])
    # a rerun skips what is there
    _, matched, skipped = match_pairs(features_file, pairs, output, progress=False)
    assert (matched, skipped) == (0, 6)


def test_match_pairs_errors(features_file, tmp_path):
    with pytest.raises(keypoints.KeypointsError, match="not in"):
        match_pairs(features_file, [("graf/img1.ppm", "nope.jpg")], tmp_path / "m.h5")
    with pytest.raises(keypoints.ImageNotFoundError):
        match_pairs(tmp_path / "missing.h5", [], tmp_path / "m.h5")
