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
