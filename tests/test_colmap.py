"""COLMAP import: counts in the database equal those in the h5 files, pycolmap reads keypoints
(+0.5) and matches back, and the database is ready for incremental mapping."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from conftest import DATA, require

import keypoints
from keypoints.io.hloc import list_names, read_matches
from keypoints.pipeline import exhaustive_pairs, match_pairs

pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is not installed")


@pytest.fixture(scope="module")
def sfm_files(tmp_path_factory):
    """Features and exhaustive matches of the Oxford 'wall' sequence (six views of a wall)."""
    tmp = tmp_path_factory.mktemp("colmap")
    images = tmp / "images"
    images.mkdir()
    for path in sorted(require(DATA / "homography" / "oxford_affine" / "wall").glob("img*")):
        shutil.copy(path, images / path.name)
    features = keypoints.extract(images, tmp / "features.h5", "aliked-n16", resize=None,
                                 max_keypoints=2048, progress=False)  # fmt: skip
    names = list_names(features)
    matches, _, _ = match_pairs(features, exhaustive_pairs(names), tmp / "matches.h5",
                                progress=False)  # fmt: skip
    return tmp, images, features, matches, names


@pytest.mark.parametrize("with_image_dir", [False, True])
def test_import_counts_and_read_back(sfm_files, with_image_dir):
    from keypoints.io.colmap import import_colmap

    tmp, images, features, matches, names = sfm_files
    database = tmp / f"db-{with_image_dir}.db"
    result = import_colmap(features, matches, database, image_dir=images if with_image_dir
                           else None)  # fmt: skip
    pairs = exhaustive_pairs(names)
    with h5py.File(features, "r") as f:
        counts = {n: len(f[n]["keypoints"]) for n in names}
        kpts = {n: f[n]["keypoints"][()] for n in names}
    assert result.images == len(names) == 6
    assert result.keypoints == sum(counts.values())
    assert result.matched_pairs == len(pairs) == 15
    assert result.verified_pairs > 0
    db = pycolmap.Database.open(database)
    try:
        ids = {n: db.read_image_with_name(n).image_id for n in names}
        for n in names:
            np.testing.assert_allclose(db.read_keypoints(ids[n])[:, :2], kpts[n] + 0.5)
        total = 0
        for a, b in pairs:
            got = db.read_matches(ids[a], ids[b])
            expected = read_matches(matches, a, b)
            if ids[a] > ids[b]:  # COLMAP stores each pair once, smaller id first
                expected = expected[:, ::-1]
            np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(expected, axis=0))
            total += len(got)
        assert total == result.matches
        with h5py.File(features, "r") as f:
            for n in names:
                camera = db.read_camera(db.read_image(ids[n]).camera_id)
                assert (camera.width, camera.height) == tuple(f[n]["image_size"][()])
    finally:
        db.close()


def test_database_is_ready_for_incremental_mapping(sfm_files):
    """COLMAP reconstructs all six views from what we wrote, with sub-pixel reprojection
    errors (keypoints in the wrong convention or matches of the wrong pairs would not)."""
    from keypoints.io.colmap import import_colmap

    tmp, images, features, matches, names = sfm_files
    database = tmp / "mapping.db"
    import_colmap(features, matches, database)
    reconstructions = pycolmap.incremental_mapping(database, images, tmp / "sparse")
    assert reconstructions, "no reconstruction"
    best = max(reconstructions.values(), key=lambda r: r.num_reg_images())
    assert best.num_reg_images() == 6 and best.num_points3D() > 1000
    assert best.compute_mean_reprojection_error() < 1.0


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "keypoints", *map(str, args)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_stale_matches_are_rematched_and_never_reach_colmap(tmp_path):
    """The issue's sequence: extract 1024, match-pairs, re-extract 256 --overwrite, match-pairs
    (the pairs are matched again, not skipped), colmap: every index fits its keypoints."""
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(require(DATA / "homography" / "oxford_affine" / "wall").glob("img*"))[:3]:
        shutil.copy(path, images / path.name)
    features, matches = tmp_path / "f.h5", tmp_path / "m.h5"
    common = ["-m", "aliked-t16", "--resize", "480"]
    assert _cli("extract", images, "-o", features, *common, "--max-keypoints", 1024).returncode == 0
    assert _cli("match-pairs", features, "--exhaustive", "-o", matches).returncode == 0
    names = list_names(features)
    assert max(read_matches(matches, a, b).max() for a, b in exhaustive_pairs(names)) >= 256
    again = _cli("extract", images, "-o", features, *common, "--max-keypoints", 256, "--overwrite")
    assert again.returncode == 0
    rerun = _cli("match-pairs", features, "--exhaustive", "-o", matches)
    assert rerun.returncode == 0 and "matched 3 pair(s), skipped 0" in rerun.stdout
    for a, b in exhaustive_pairs(names):
        indices = read_matches(matches, a, b, (256, 256))  # within the new keypoints
        assert len(indices) and indices.max() < 256
    assert "skipped 3" in _cli("match-pairs", features, "--exhaustive", "-o", matches).stdout
    # other matcher settings are refused, not mixed in
    other = _cli("match-pairs", features, "--exhaustive", "-o", matches, "--ratio", "0.8")
    assert other.returncode == 2 and "--overwrite to replace it" in other.stderr
    done = _cli("colmap", features, matches, "--database", tmp_path / "db.db", "--no-verify")
    assert done.returncode == 0, done.stderr


def test_bad_indices_are_refused_and_colmap_is_atomic(sfm_files, tmp_path):
    """An index of 10**6 (COLMAP died of SIGSEGV on it) is refused with a clear message; the
    existing database survives a failed --overwrite; nothing half-written is left."""
    from keypoints.io.colmap import import_colmap

    _, _, features, matches, names = sfm_files
    database = tmp_path / "db.db"
    first = import_colmap(features, matches, database, verify=False)
    before = database.read_bytes()
    bad = tmp_path / "bad.h5"
    shutil.copy(matches, bad)
    with h5py.File(bad, "r+") as f:
        key = next(f"{k}/{s}" for k in f for s in f[k])
        data = f[key]["matches0"][()]
        data[np.flatnonzero(data > -1)[0]] = 10**6
        f[key]["matches0"][...] = data
    result = _cli("colmap", features, bad, "--database", database, "--overwrite", "--no-verify")
    assert result.returncode == 2
    assert "do not fit the features" in result.stderr and "highest index 1000000" in result.stderr
    assert database.read_bytes() == before  # the old database is kept whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [".db.db.lock", "bad.h5", "db.db"]
    # a matches file that is not HDF5, named in the message
    (tmp_path / "junk.h5").write_text("junk")
    result = _cli("colmap", features, tmp_path / "junk.h5", "--database", tmp_path / "x.db")
    assert result.returncode == 2 and "junk.h5 is not a readable HDF5 matches file" in result.stderr
    assert not (tmp_path / "x.db").exists()
    assert first.images == len(names)


@pytest.mark.slow
def test_colmap_killed_leaves_nothing_and_the_rerun_completes(sfm_files, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    _, _, features, matches, _ = sfm_files
    database = tmp_path / "db.db"
    command = [sys.executable, "-m", "keypoints", "colmap", str(features), str(matches),
               "--database", str(database)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while process.poll() is None:  # until the database being built has content
        assert time.time() < deadline
        if any(p.stat().st_size for p in tmp_path.glob(".db.db.*.tmp")):
            break
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the import ended before it could be killed"
    assert list(tmp_path.glob(".db.db.*.tmp")), "killed after the rename"
    assert not database.exists()  # never a half database under the final name
    rerun = _cli("colmap", features, matches, "--database", database)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(tmp_path.glob(".db.db.*.tmp"))  # the killed run's temporary is removed
    handle = pycolmap.Database.open(database)
    try:
        assert handle.num_verified_image_pairs() > 0
    finally:
        handle.close()


def test_colmap_command_prints_our_summary_not_colmaps_sift_setup(sfm_files, tmp_path, capfd):
    """COLMAP's verification logs "Creating SIFT CPU feature matcher" even for ALIKED features;
    by default only our summary prints, -v shows COLMAP's lines too."""
    import logging

    from keypoints.cli import main

    pytest.importorskip("pycolmap", reason="pycolmap is not installed ([colmap] extra)")
    _, images, features, matches, _ = sfm_files
    base = ["colmap", str(features), str(matches), "--image-dir", str(images), "--database"]
    assert main([*base, str(tmp_path / "a.db")]) == 0
    out, err = capfd.readouterr()
    assert "wrote" in out and "6 images" in out
    assert "SIFT" not in err and "feature_matching" not in err, err
    try:
        assert main([*base, str(tmp_path / "b.db"), "-v"]) == 0
        assert "Creating SIFT CPU feature matcher" in capfd.readouterr().err
    finally:
        logging.getLogger("keypoints").setLevel(logging.NOTSET)  # -v set it for this process
