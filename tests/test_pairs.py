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


def test_colliding_pair_keys_are_refused(features_file, tmp_path):
    """``x/1.png`` and ``x-1.png`` share hloc's pair key: refused, never stored under the
    other's key; a group recording other names is not read as this pair's."""
    source = tmp_path / "f.h5"
    shutil.copy(features_file, source)
    with h5py.File(source, "r+") as f:
        f.copy(f["graf/img1.ppm"], f, name="graf-img1.ppm")
    pairs = [("graf/img1.ppm", "graf/img2.ppm"), ("graf-img1.ppm", "graf/img2.ppm")]
    with pytest.raises(keypoints.KeypointsError, match="same key 'graf-img1.ppm'.*rename one"):
        match_pairs(source, pairs, tmp_path / "m.h5", progress=False)
    assert not (tmp_path / "m.h5").exists()
    match_pairs(source, pairs[:1], tmp_path / "m.h5", progress=False)
    with pytest.raises(keypoints.KeypointsError, match="hloc pair keys collide"):
        read_matches(tmp_path / "m.h5", *pairs[1])
    from keypoints.io.colmap import import_colmap

    pytest.importorskip("pycolmap")
    with pytest.raises(keypoints.KeypointsError, match="same key"):
        import_colmap(source, tmp_path / "m.h5", tmp_path / "db.db", pairs=pairs, verify=False)


def test_matches_record_their_provenance(features_file, tmp_path):
    """Each pair names its images and their feature identities; the file its matcher."""
    from keypoints.io.hloc import image_identity

    names = list_names(features_file)
    output = tmp_path / "m.h5"
    match_pairs(features_file, [(names[0], names[1])], output, method="mnn", ratio=0.9,
                progress=False)  # fmt: skip
    with h5py.File(output, "r") as f, h5py.File(features_file, "r") as g:
        group = f[pair_name(names[0], names[1])]
        assert (group.attrs["name0"], group.attrs["name1"]) == (names[0], names[1])
        assert group.attrs["features0"] == image_identity(g[names[0]])
        assert group.attrs["features1"] == image_identity(g[names[1]]) != group.attrs["features0"]
        assert '"method": "mnn"' in f.attrs["keypoints_matches"]
        assert '"ratio": 0.9' in f.attrs["keypoints_matches"]
    # a file of another tool (no record) is refused, not adopted
    with h5py.File(tmp_path / "hloc.h5", "w") as f:
        f.create_group("a")
    with pytest.raises(keypoints.ConfigError, match="records no matcher settings"):
        match_pairs(features_file, [(names[0], names[1])], tmp_path / "hloc.h5", progress=False)


@pytest.mark.slow
def test_match_pairs_killed_leaves_the_output_whole(tmp_path):
    """SIGKILL while match-pairs writes: the earlier output is unchanged, the rerun removes the
    dead run's temporary and gives the uninterrupted result."""
    import os
    import signal
    import subprocess
    import sys
    import time

    images = tmp_path / "images"
    images.mkdir()
    for sequence in ("graf", "wall", "boat"):
        for path in sorted(require(DATA / "homography" / "oxford_affine" / sequence).glob("img*")):
            shutil.copy(path, images / f"{sequence}-{path.name}")
    features = keypoints.extract(images, tmp_path / "f.h5", "aliked-n16", resize=320,
                                 max_keypoints=300, progress=False)  # fmt: skip
    pairs = exhaustive_pairs(list_names(features))
    reference = match_pairs(features, pairs, tmp_path / "reference.h5", progress=False)[0]
    output = tmp_path / "m.h5"
    match_pairs(features, pairs[:5], output, progress=False)
    before = output.read_bytes()

    command = [sys.executable, "-m", "keypoints", "match-pairs", str(features), "--exhaustive",
               "-o", str(output)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while process.poll() is None:
        assert time.time() < deadline
        if any(p.stat().st_size > len(before) for p in tmp_path.glob(".m.h5.*.tmp")):
            break
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert output.read_bytes() == before  # the earlier output, whole
    assert list(tmp_path.glob(".m.h5.*.tmp"))

    match_pairs(features, pairs, output, progress=False)
    assert not list(tmp_path.glob(".m.h5.*.tmp"))
    for a, b in pairs:
        np.testing.assert_array_equal(read_matches(output, a, b), read_matches(reference, a, b))


def test_pairs_command_names_only_its_own_options(tmp_path, capsys):
    """`keypoints pairs` has no --pairs option, so its message does not suggest one."""
    from keypoints.cli import main

    assert main(["pairs", "examples", "-o", str(tmp_path / "p.txt")]) == 2
    err = capsys.readouterr().err
    assert "choose exactly one of --exhaustive, --sequential K" in err and "--pairs" not in err
    assert main(["match-pairs", str(tmp_path / "f.h5"), "-o", str(tmp_path / "m.h5")]) == 2
    assert "--pairs FILE, --exhaustive" in capsys.readouterr().err
