"""Retrieval pairs: VLAD of the local descriptors, the pairs it gives, recall against scenes."""

from __future__ import annotations

import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from conftest import DATA, require

import keypoints
from keypoints.features import Features
from keypoints.io.hloc import list_names, write_features
from keypoints.pipeline import (
    exhaustive_pairs,
    nearest_images,
    pairs_from,
    read_pairs,
    recall_at_k,
    retrieval_pairs,
)
from keypoints.pipeline.retrieval import Recall, global_descriptors, kmeans, top_k, vlad


def write_file(path, descriptors: dict[str, np.ndarray]):
    """A features file in hloc's layout with these ``(N, D)`` descriptors per image."""
    with h5py.File(path, "w") as f:
        for name, d in descriptors.items():
            n = len(d)
            write_features(f, name, Features(
                keypoints=torch.rand(n, 2) * 100, scores=torch.ones(n),
                descriptors=torch.from_numpy(d), image_size=(100, 100),
                binary=d.dtype == np.uint8,
            ))  # fmt: skip
    return path


def two_groups(rng, binary=False, per_group=4, points=300):
    """Two scenes, each a pool of ``points`` descriptors drawn from the same distribution (unit
    vectors, or random bits); each image sees a random 80% of its scene's pool, with noise
    (float: 0.05 Gaussian; binary: 5% of the bits flipped). The groups share no descriptor; the
    images of a group share most of theirs, as photos of one scene do."""
    bits = 256
    out = {}
    for g in "ab":
        if binary:
            pool = rng.random((points, bits)) < 0.5
        else:
            pool = rng.standard_normal((points, 64))
            pool /= np.linalg.norm(pool, axis=1, keepdims=True)
        for i in range(per_group):
            seen = pool[np.sort(rng.choice(points, int(0.8 * points), replace=False))]
            if binary:  # packed like ORB's uint8 (N, 32)
                flips = rng.random(seen.shape) < 0.05
                out[f"{g}{i}.jpg"] = np.packbits(seen ^ flips, axis=1)
            else:
                x = seen + 0.05 * rng.standard_normal(seen.shape)
                out[f"{g}{i}.jpg"] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(
                    np.float32
                )
    return out


@pytest.fixture
def grouped(tmp_path):
    return write_file(tmp_path / "f.h5", two_groups(np.random.default_rng(0)))


def assert_groups(ranking: dict[str, list[str]]) -> None:
    for query, neighbours in ranking.items():
        assert [n[0] for n in neighbours] == [query[0]] * len(neighbours), (query, neighbours)


def test_smoke_and_shapes(grouped):
    names, g = global_descriptors(grouped, codebook_size=16)
    assert names == list_names(grouped) and g.dtype == np.float32
    assert g.shape == (8, 16 * 64)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1, rtol=1e-5)
    pairs = retrieval_pairs(grouped, 2, codebook_size=16)
    assert all(isinstance(a, str) and isinstance(b, str) for a, b in pairs)
    assert len(pairs) == len(set(pairs)) and all(a < b for a, b in pairs)  # sorted name order


def test_each_image_finds_its_own_group(grouped):
    """The analytic case: two groups of images with different descriptors; each image's 3
    nearest are the 3 other images of its group, and the pairs are the two groups' pairs.

    Within a visual word, the residuals of a group's descriptors point to the group's side of
    the word's centre, so VLADs of a group agree and those of the two groups oppose.
    """
    names, g = global_descriptors(grouped, codebook_size=16)
    similarity = g @ g.T
    group = np.array([n[0] for n in names])
    same = (group[:, None] == group[None]) & ~np.eye(len(names), dtype=bool)
    assert similarity[same].min() > 0.1 and similarity[group[:, None] != group[None]].max() < -0.1
    ranking = nearest_images(grouped, 3, codebook_size=16)
    assert list(ranking) == list_names(grouped)
    assert all(len(v) == 3 and q not in v for q, v in ranking.items())
    assert_groups(ranking)
    pairs = retrieval_pairs(grouped, 3, codebook_size=16)
    names = list_names(grouped)
    assert pairs == exhaustive_pairs(names[:4]) + exhaustive_pairs(names[4:])
    assert recall_at_k(ranking, {n: n[0] for n in names}, 3) == Recall(1.0, 1.0, 8)


def test_k_beyond_the_collection_is_exhaustive(grouped):
    names = list_names(grouped)
    assert retrieval_pairs(grouped, 7) == exhaustive_pairs(names)
    assert retrieval_pairs(grouped, 100) == exhaustive_pairs(names)
    assert all(len(v) == 7 for v in nearest_images(grouped, 100).values())


def test_deterministic(grouped, tmp_path):
    rng = np.random.default_rng(1)
    path = write_file(tmp_path / "noise.h5", {
        f"{i}.jpg": rng.standard_normal((50, 16)).astype(np.float32) for i in range(12)
    })  # fmt: skip
    first = retrieval_pairs(path, 2, codebook_size=8, sample=300, seed=3)
    assert retrieval_pairs(path, 2, codebook_size=8, sample=300, seed=3) == first
    assert len(first) < 12 * 11 // 2
    a = global_descriptors(path, codebook_size=8, sample=300, seed=3)[1]
    np.testing.assert_array_equal(a, global_descriptors(path, codebook_size=8, sample=300,
                                                        seed=3)[1])  # fmt: skip


def test_binary_descriptors(tmp_path):
    """ORB-like uint8 descriptors are unpacked to +-1 bits: the groups are found."""
    path = write_file(tmp_path / "orb.h5", two_groups(np.random.default_rng(2), binary=True))
    names, g = global_descriptors(path, codebook_size=16)
    assert g.shape == (8, 16 * 256)
    assert_groups(nearest_images(path, 3, codebook_size=16))


def test_binary_descriptors_of_real_orb(tmp_path):
    """ORB features of two Oxford sequences, extracted: each image's nearest is its sequence's."""
    images = tmp_path / "images"
    images.mkdir()
    for sequence in ("graf", "boat"):
        folder = require(DATA / "homography" / "oxford_affine" / sequence)
        for path in sorted(folder.glob("img[1-3].*")):
            shutil.copy(path, images / f"{sequence}-{path.name}")
    features = keypoints.extract(images, tmp_path / "orb.h5", "orb", resize=480,
                                 max_keypoints=500, progress=False)  # fmt: skip
    ranking = nearest_images(features, 1, codebook_size=16)
    assert all(v[0].split("-")[0] == q.split("-")[0] for q, v in ranking.items()), ranking


def test_images_without_keypoints_still_get_pairs(tmp_path):
    descriptors = two_groups(np.random.default_rng(3))
    descriptors["empty.jpg"] = np.zeros((0, 64), np.float32)
    path = write_file(tmp_path / "f.h5", descriptors)
    with pytest.warns(UserWarning, match="1 image.*without keypoints.*empty.jpg"):
        names, g = global_descriptors(path, codebook_size=16)
    assert not g[names.index("empty.jpg")].any()
    with pytest.warns(UserWarning):
        pairs = retrieval_pairs(path, 2, codebook_size=16)
    assert any("empty.jpg" in pair for pair in pairs)
    with pytest.warns(UserWarning):
        ranking = nearest_images(path, 3, codebook_size=16)
    assert_groups({q: v for q, v in ranking.items() if q != "empty.jpg"})
    # no descriptor anywhere: every image still paired (ties broken by name order)
    nothing = write_file(tmp_path / "none.h5", {
        f"{i}.jpg": np.zeros((0, 8), np.float32) for i in range(4)
    })  # fmt: skip
    with pytest.warns(UserWarning, match="4 image"):
        assert retrieval_pairs(nothing, 1) == [("0.jpg", "1.jpg"), ("0.jpg", "2.jpg"),
                                               ("0.jpg", "3.jpg")]  # fmt: skip


def test_errors(grouped, tmp_path):
    for k in (0, -1, 1.5):
        with pytest.raises(keypoints.ConfigError, match="retrieval K.*>= 1"):
            retrieval_pairs(grouped, k)  # type: ignore[arg-type]
    with pytest.raises(keypoints.ConfigError, match="codebook size"):
        retrieval_pairs(grouped, 2, codebook_size=0)
    mixed = write_file(tmp_path / "mixed.h5", {
        "a.jpg": np.ones((3, 8), np.float32), "b.jpg": np.ones((3, 16), np.float32),
        "c.jpg": np.ones((3, 8), np.float32),
    })  # fmt: skip
    with pytest.raises(keypoints.ConfigError, match="described differently.*8-d.*16-d"):
        retrieval_pairs(mixed, 1)
    with pytest.raises(keypoints.ImageNotFoundError):
        retrieval_pairs(tmp_path / "missing.h5", 1)
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(keypoints.KeypointsError, match="no image features"):
        retrieval_pairs(tmp_path / "empty.h5", 1)
    with pytest.raises(keypoints.ConfigError, match="needs a features .h5.*keypoints extract"):
        pairs_from("examples", retrieval=5)
    with pytest.raises(keypoints.ConfigError, match="--sequential K, --retrieval K, --gps"):
        pairs_from(grouped, exhaustive=True, retrieval=5, from_file=False)
    with pytest.raises(keypoints.ConfigError, match="--sequential K$"):  # match-pairs' options
        pairs_from(grouped, exhaustive=True, retrieval=5)


def test_pairs_from_retrieval(grouped):
    assert pairs_from(grouped, retrieval=3) == retrieval_pairs(grouped, 3)


def test_vlad_kmeans_top_k_reference():
    # VLAD by hand: codebook e0, e1; descriptors e0 + 0.1 e1 and e1: residuals (0, .1), (0, 0)
    codebook = np.eye(2, dtype=np.float32)
    v = vlad(np.array([[1, 0.1], [0, 1]], np.float32), codebook)
    np.testing.assert_allclose(v, [0, 1, 0, 0], atol=1e-6)  # intra-norm, sqrt, L2
    v = vlad(np.array([[1, 0.5], [0.5, 1]], np.float32), codebook)
    np.testing.assert_allclose(v, np.array([0, 1, 1, 0]) / np.sqrt(2), atol=1e-6)
    assert not vlad(np.zeros((0, 2), np.float32), codebook).any()
    # k-means on two far clusters finds their means; k beyond the points gives the points
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(0, 0.1, (100, 2)), rng.normal(10, 0.1, (100, 2))])
    centres = kmeans(data, 2, seed=0)
    np.testing.assert_allclose(sorted(centres[:, 0]), [0, 10], atol=0.1)
    assert kmeans(data[:3], 10).shape == (3, 2)
    # top_k: most similar first, ties by index, never itself
    g = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32)
    np.testing.assert_array_equal(top_k(g, 2), [[1, 3], [0, 3], [0, 1], [0, 1]])
    assert top_k(g, 10).shape == (4, 3) and top_k(g[:1], 3).shape == (1, 0)


def test_recall_at_k_reference():
    scenes = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b", "c": "c"}
    ranking = {
        "a1": ["b1", "a2", "a3"],  # @1: 0/1; @3: 2/2
        "a2": ["a1", "c", "a3"],  # @1: 1/1; @3: 2/2
        "a3": ["c", "b1", "b2"],  # 0
        "b1": ["b2", "a1", "a2"],  # 1
        "b2": ["a1", "a2", "c"],  # 0
        "c": ["a1", "a2", "a3"],  # not a query: alone in its scene
    }
    assert recall_at_k(ranking, scenes, 1) == Recall(2 / 5, 2 / 5, 5)
    at3 = recall_at_k(ranking, scenes, 3)
    assert at3.queries == 5
    assert at3.recall == pytest.approx((1 + 1 + 0 + 1 + 0) / 5)
    assert at3.hit_rate == pytest.approx(3 / 5)
    # pairs: each image's partners, unranked
    pairs = [("a1", "a2"), ("a2", "b1"), ("b1", "b2"), ("c", "a3")]
    measured = recall_at_k(pairs, scenes)
    # a1: {a2} 1/1; a2: {a1, b1} 1/2; a3: {c} 0; b1: {a2, b2} 1/1 (cap 1); b2: {b1} 1
    assert measured.recall == pytest.approx((1 + 0.5 + 0 + 1 + 1) / 5)
    assert measured.hit_rate == pytest.approx(4 / 5)
    assert recall_at_k({}, {"x": "x"}, 1).queries == 0


def test_cli_pairs_retrieval(grouped, tmp_path, capsys):
    from keypoints.cli import main

    output = tmp_path / "p.txt"
    assert main(["pairs", str(grouped), "--retrieval", "3", "-o", str(output)]) == 0
    assert read_pairs(output) == retrieval_pairs(grouped, 3)
    assert f"wrote {len(read_pairs(output))} pairs" in capsys.readouterr().out
    assert main(["pairs", "examples", "--retrieval", "5", "-o", str(tmp_path / "q.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--retrieval needs a features .h5" in err and "keypoints extract" in err
    assert not (tmp_path / "q.txt").exists()
    assert main(["pairs", str(grouped), "-o", str(output)]) == 2
    assert "--exhaustive, --sequential K, --retrieval K" in capsys.readouterr().err


def mixed_scenes(folder) -> dict[str, str]:
    """The shared data's scenes in one flat folder (as benchmarks/bench_retrieval.py)."""
    folder.mkdir()
    scenes = {}
    sources = []
    for sequence in ("boat", "graf", "wall"):
        found = sorted(require(DATA / "homography" / "oxford_affine" / sequence).glob("img*"))
        sources += [(p, f"oxford-{sequence}", f"oxford-{sequence}") for p in found]
    sources += [(p, "icl", "icl") for p in sorted(require(DATA / "images" / "icl_snippet")
                                                  .glob("*.png"))]  # fmt: skip
    for p in sorted(require(DATA / "images" / "superglue" / "phototourism").glob("*.jpg")):
        sources.append((p, "phototourism", re.sub(r"(_\d+)+$", "", p.stem)))
    for p in sorted(require(DATA / "images" / "superglue" / "scannet").glob("*.jpg")):
        sources.append((p, "scannet", p.name[:12]))
    for p in sorted(require(DATA / "images" / "coco").glob("*.png")):
        sources.append((p, "coco", f"coco-{p.stem}"))
    for path, prefix, scene in sources:
        shutil.copy(path, folder / f"{prefix}-{path.name}")
        scenes[f"{prefix}-{path.name}"] = scene
    return scenes


@pytest.mark.slow
def test_recall_on_the_mixed_shared_folder(tmp_path):
    """Oxford boat/graf/wall, ICL, phototourism, ScanNet and COCO in one folder (36 images, 11
    scenes). Measured (aliked-n16, resize 640, 1024 keypoints, codebook 64, seed 0): recall@5
    0.847, hit rate@5 0.971, recall@1 0.941; 101 pairs at K=5 against 630 exhaustive."""
    scenes = mixed_scenes(tmp_path / "images")
    features = keypoints.extract(tmp_path / "images", tmp_path / "f.h5", "aliked-n16",
                                 resize=640, max_keypoints=1024, progress=False)  # fmt: skip
    assert set(list_names(features)) == set(scenes)
    ranking = nearest_images(features, 5)
    at5 = recall_at_k(ranking, scenes, 5)
    assert at5.queries == len(scenes) - 2  # the two COCO images are alone in their scene
    assert at5.recall >= 0.7 and at5.hit_rate >= 0.85, at5
    assert recall_at_k(ranking, scenes, 1).recall >= 0.8
    pairs = retrieval_pairs(features, 5)
    n = len(scenes)
    assert len(pairs) <= n * 5 and len(pairs) < n * (n - 1) // 2 / 4
    assert recall_at_k(pairs, scenes).hit_rate >= at5.hit_rate  # the union adds partners


def save_with_gps(path, latitude=None, longitude=None):
    """A small JPEG, with EXIF GPS tags at (latitude, longitude) degrees when given."""
    from PIL import Image

    exif = Image.Exif()
    if latitude is not None and longitude is not None:

        def dms(value):
            value = abs(value)
            d, m = int(value), int(abs(value) * 60) % 60
            return (float(d), float(m), round((value * 3600 - d * 3600 - m * 60), 4))

        exif[0x8825] = {1: "N" if latitude >= 0 else "S", 2: dms(latitude),
                        3: "E" if longitude >= 0 else "W", 4: dms(longitude)}  # fmt: skip
    Image.new("RGB", (32, 24), "gray").save(path, exif=exif)


def test_gps_pairs(tmp_path, capsys):
    """Images within the radius (haversine) are paired; those without GPS are named."""
    from keypoints.cli import main
    from keypoints.pipeline.pairs import gps_pairs, gps_position

    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    # Notre-Dame (48.85296 N, 2.34990 E): a, b ~11 m apart; c 1 km north; d in the southern and
    # western hemispheres; e without GPS
    save_with_gps(images / "a.jpg", 48.85296, 2.34990)
    save_with_gps(images / "sub" / "b.jpg", 48.85306, 2.34990)
    save_with_gps(images / "c.jpg", 48.86195, 2.34990)
    save_with_gps(images / "d.jpg", -33.85678, -151.21530)
    save_with_gps(images / "e.jpg")
    assert gps_position(images / "a.jpg") == pytest.approx((48.85296, 2.34990), abs=1e-6)
    assert gps_position(images / "d.jpg") == pytest.approx((-33.85678, -151.21530), abs=1e-6)
    assert gps_position(images / "e.jpg") is None
    assert gps_position(tmp_path / "missing.jpg") is None
    with pytest.warns(UserWarning, match="1 image.*without EXIF GPS.*e.jpg"):
        assert gps_pairs(images, 20) == [("a.jpg", "sub/b.jpg")]
    with pytest.warns(UserWarning):  # 1 km of latitude: 0.008993 degrees on the mean sphere
        assert gps_pairs(images, 1010) == [("a.jpg", "c.jpg"), ("a.jpg", "sub/b.jpg"),
                                           ("c.jpg", "sub/b.jpg")]  # fmt: skip
    with pytest.warns(UserWarning):
        assert gps_pairs(images, 980) == [("a.jpg", "sub/b.jpg")]
    with pytest.raises(keypoints.ConfigError, match="radius must be > 0"):
        gps_pairs(images, 0)
    (tmp_path / "plain").mkdir()
    save_with_gps(tmp_path / "plain" / "x.jpg")
    with pytest.raises(keypoints.ConfigError, match="no image has EXIF GPS"):
        gps_pairs(tmp_path / "plain", 10)
    with pytest.raises(keypoints.ConfigError, match="--gps reads the images' EXIF"):
        pairs_from(tmp_path / "f.h5", gps=10, from_file=False)

    output = tmp_path / "p.txt"
    assert main(["pairs", str(images), "--gps", "20", "-o", str(output)]) == 0
    assert read_pairs(output) == [("a.jpg", "sub/b.jpg")]
    assert main(["pairs", str(images), "--gps", "-5", "-o", str(output)]) == 2
    assert "Invalid value for '--gps'" in capsys.readouterr().err
