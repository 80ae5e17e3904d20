"""keypoints.io as untrusted input: fuzzed features and matches files (hloc layout), npz, json
and pairs files end in a KeypointsError naming the file, never another exception."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import DATA, require

import keypoints
from keypoints.errors import KeypointsError
from keypoints.io import load_features, save_features
from keypoints.io.hloc import list_names, read_features, read_matches
from keypoints.io.locks import BusyError, exclusive, waiting
from keypoints.pipeline import exhaustive_pairs, match_pairs, read_pairs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A features file, a matches file and an npz/json pair of real (small) features."""
    tmp = tmp_path_factory.mktemp("io")
    images = tmp / "images"
    images.mkdir()
    for i in (1, 2, 3):
        shutil.copy(require(DATA / "homography" / "oxford_affine" / "graf" / f"img{i}.ppm"),
                    images)  # fmt: skip
    features = keypoints.extract(images, tmp / "f.h5", "aliked-t16", max_keypoints=100,
                                 resize=320, progress=False)  # fmt: skip
    names = list_names(features)
    matches = match_pairs(features, exhaustive_pairs(names), tmp / "m.h5", progress=False)[0]
    found = read_features(features, names[0])
    return tmp, features, matches, names, found


def _use_features(path, tmp):
    for name in list_names(path):
        read_features(path, name)
    pairs = exhaustive_pairs(list_names(path))
    match_pairs(path, pairs, tmp / "out.h5", progress=False, overwrite=True)


def _use_matches(path, names):
    for a, b in exhaustive_pairs(names):
        read_matches(path, a, b, (100, 100))


def test_truncated_h5_files(files, tmp_path):
    """A partly copied features or matches file, cut at 60 random places."""
    _, features, matches, names, _ = files
    rng = np.random.default_rng(0)
    for source, use in ((features, lambda p: _use_features(p, tmp_path)),
                        (matches, lambda p: _use_matches(p, names))):  # fmt: skip
        data = source.read_bytes()
        for cut in rng.integers(0, len(data), 30):
            path = tmp_path / "cut.h5"
            path.write_bytes(data[:cut])
            with pytest.raises(KeypointsError, match="cut.h5"):
                use(path)


def _mutations(group: h5py.Group, rng):
    """Ways to damage one image's or pair's group while keeping the file valid HDF5."""
    keys = list(group)
    key = keys[rng.integers(len(keys))]
    data = group[key][()]
    big = np.asarray(data, np.int64) + 10**6
    choices = [
        lambda: group.__delitem__(key),
        lambda: (group.__delitem__(key), group.create_dataset(key, data=data.ravel()[:-1])),
        lambda: (group.__delitem__(key), group.create_dataset(key, data=data.astype(np.int8))),
        lambda: (group.__delitem__(key), group.create_group(key)),
        lambda: (group.__delitem__(key), group.create_dataset(key, data=np.full(data.shape,
                                                                                np.nan))),
        lambda: (group.__delitem__(key), group.create_dataset(key, data="text")),
        lambda: (group.__delitem__(key), group.create_dataset(key, data=big)),
        lambda: group.attrs.__setitem__("name0", "someone-else.png"),
    ]  # fmt: skip
    choices[rng.integers(len(choices))]()


def _leaf_groups(file: h5py.File) -> list[h5py.Group]:
    """The groups holding datasets (one image's features, one pair's matches)."""
    found = []

    def visit(_, item):
        if isinstance(item, h5py.Group) and any(isinstance(v, h5py.Dataset) for v in item.values()):
            found.append(item)

    file.visititems(visit)
    return found


def test_structurally_damaged_h5_files(files, tmp_path):
    """Valid HDF5 with wrong content: a dataset missing, cut short, of the wrong dtype, a
    group instead of an array, NaN coordinates, text, indices out of range, wrong names."""
    _, features, matches, names, _ = files
    rng = np.random.default_rng(1)
    outcomes = set()
    for trial in range(60):
        is_features = trial % 2 == 0
        path = tmp_path / f"damaged{trial}.h5"
        shutil.copy(features if is_features else matches, path)
        with h5py.File(path, "r+") as f:
            groups = _leaf_groups(f)
            _mutations(groups[rng.integers(len(groups))], rng)
        try:
            if is_features:
                _use_features(path, tmp_path)
            else:
                _use_matches(path, names)
            outcomes.add("accepted")
        except KeypointsError as error:
            assert path.name in str(error) or "pair" in str(error) or "image" in str(error)
            outcomes.add("refused")
    assert outcomes == {"accepted", "refused"}  # some damage is harmless (e.g. a score dtype)


def test_npz_json_and_pairs_files_as_untrusted_input(files, tmp_path):
    """Byte-level damage and hand-made content in npz, json and pairs files."""
    *_, found = files
    rng = np.random.default_rng(2)
    for fmt in ("npz", "json"):
        good = save_features(found, tmp_path / f"good.{fmt}").read_bytes()
        for trial in range(40):
            data = bytearray(good)
            if trial % 2:
                data = data[: rng.integers(len(data))]
            else:
                for _ in range(rng.integers(1, 10)):
                    data[rng.integers(len(data))] = rng.integers(256)
            path = tmp_path / f"bad.{fmt}"
            path.write_bytes(bytes(data))
            try:
                back = load_features(path)
                assert len(back.keypoints) == len(back.scores) == len(back.descriptors)
            except KeypointsError as error:
                assert "bad." in str(error)
    made = {"keypoints": [[1, 2, 3]], "scores": [1], "descriptors": [[0.5]], "image_size": [4, 4],
            "descriptor_dim": 1}  # fmt: skip
    (tmp_path / "made.json").write_text(json.dumps(made))
    with pytest.raises(KeypointsError, match=r"made.json: not a valid features file"):
        load_features(tmp_path / "made.json")
    np.savez(tmp_path / "obj.npz", keypoints=np.array([object()]), scores=np.zeros(1))
    with pytest.raises(KeypointsError, match="obj.npz"):
        load_features(tmp_path / "obj.npz")  # object arrays need pickle: refused

    (tmp_path / "pairs.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(keypoints.ConfigError, match="not a pairs file"):
        read_pairs(tmp_path / "pairs.txt")


def test_locks_refuse_a_second_writer_and_wait_for_a_cache(tmp_path):
    """One writer per output; the waiting form serializes threads."""
    import threading
    import time

    output = tmp_path / "out.h5"
    with exclusive(output, "first"):
        with pytest.raises(BusyError, match="PID [0-9]+: first"):
            with exclusive(output, "second"):
                pass
    with exclusive(output):  # released
        pass

    inside, peak = [0], [0]

    def work():
        with waiting(tmp_path / "cache.onnx"):
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            time.sleep(0.01)
            inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 1


@pytest.mark.parametrize("fmt", ["npz", "json", "h5"])
def test_saved_matches_round_trip(files, tmp_path, fmt):
    """Every key comes back equal, a missing matrix as NaN; damaged files are refused."""
    from keypoints.io import load_matches, save_matches
    from keypoints.matching import Verification

    _, features, _, names, _ = files
    f0, f1 = (read_features(features, n) for n in names[:2])
    matches = keypoints.match(f0, f1, method="mnn")
    for matrix in (np.arange(9.0).reshape(3, 3), None):
        fit = Verification("homography", matrix, np.arange(len(matches)) % 2 == 0, "no luck")
        path = save_matches(tmp_path / f"m.{fmt}", f0, f1, matches, fit, names=("a", "b"))
        data = load_matches(path)
        np.testing.assert_array_equal(data["keypoints0"], f0.keypoints.numpy())
        np.testing.assert_array_equal(data["keypoints1"], f1.keypoints.numpy())
        np.testing.assert_array_equal(data["matches"], matches.indices.numpy())
        np.testing.assert_array_equal(data["distances"], matches.distances.numpy())
        assert np.isnan(data["scores"]).all() and data["method"] == "mnn"
        np.testing.assert_array_equal(data["inliers"], fit.inliers)
        if matrix is None:
            assert np.isnan(data["matrix"]).all()
        else:
            np.testing.assert_array_equal(data["matrix"], matrix)
        assert (data["image0"], data["geometry"], data["message"]) == ("a", "homography",
                                                                       "no luck")  # fmt: skip
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(KeypointsError, match=f"m.{fmt}: not a valid matches file"):
        load_matches(path)
    with pytest.raises(keypoints.ConfigError, match="cannot save matches as '.txt'"):
        save_matches(tmp_path / "m.txt", f0, f1, matches)


OFFLINE_MODELS = [m["name"] for m in keypoints.list_models() if m["offline"]]


@pytest.mark.parametrize("model", OFFLINE_MODELS)
def test_features_round_trip_for_every_model_and_format(model, tmp_path):
    """npz, json and hloc's h5 give back every field of every bundled model's features."""
    import h5py

    from keypoints.io.hloc import write_features

    image = require(DATA / "homography" / "oxford_affine" / "graf" / "img1.ppm")
    found = keypoints.detect(str(image), model, max_keypoints=200, resize=480)[0]
    backs = [load_features(save_features(found, tmp_path / f"f.{fmt}")) for fmt in ("npz", "json")]
    with h5py.File(tmp_path / "f.h5", "w") as file:
        write_features(file, "img1.ppm", found)
    backs.append(read_features(tmp_path / "f.h5", "img1.ppm"))
    for back in backs:
        assert back == found, model
