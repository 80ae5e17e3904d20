"""Backends: onnxruntime for the dense network and NMS, its fallback, and the ONNX export."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import COCO, PARTIAL_SUPERPOINT, random_superpoint, require

import keypoints
from keypoints.models import ops
from keypoints.models.backends import cpu_has_bf16

ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")


def real_superpoint(tmp_path, **options):
    """Released encoder + descriptor head (real weights) and a seeded random detector head."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keypoints.SuperPoint.from_pretrained(require(PARTIAL_SUPERPOINT), strict=False)
    keypoints.SuperPointForKeypointDetection.from_core(model).save_pretrained(tmp_path)
    return tmp_path


def score_maps():
    """Random maps with plateaus (ties) and maxima on the border, and a real heatmap."""
    torch.manual_seed(0)
    maps = torch.rand(2, 61, 83) ** 4
    maps[0, 10:14, 20:24] = 0.99  # a plateau of equal maxima
    maps[0, 0, :] = 0.995  # maxima along the border
    maps[1, :, -1] = 0.97
    return maps


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_nms_equals_transformers(radius):
    from transformers.models.superpoint.modeling_superpoint import simple_nms as reference

    maps = score_maps()
    model = random_superpoint()
    with torch.no_grad():
        real = model.heatmap(model.encode(torch.rand(1, 1, 64, 88)))
    for scores in (maps, real):
        expected = reference(scores.clone(), radius)
        assert torch.equal(ops.simple_nms(scores, radius), expected)
        from keypoints.models.backends import onnx_nms

        assert torch.equal(onnx_nms(scores, radius), expected)


def by_position(keypoints, *values):
    """``keypoints (N, 2)`` and per-keypoint ``values`` sorted by (y, x): the backends agree to
    about 1e-6, which may swap keypoints of nearly equal scores in the score order."""
    order = torch.from_numpy(np.lexsort((keypoints[:, 0].numpy(), keypoints[:, 1].numpy())))
    return [keypoints[order], *(v[order] for v in values)]


def test_onnxruntime_backend_matches_torch_on_real_images(tmp_path, coco_images):
    """Tolerance: dense maps agree to about 1e-6, so keypoints are the same set and scores and
    descriptors agree within 1e-5 (documented in the README)."""
    checkpoint = real_superpoint(tmp_path)
    processor = keypoints.SuperPointImageProcessor()
    inputs = processor(coco_images, return_tensors="pt")
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        model = keypoints.SuperPointForKeypointDetection.from_pretrained(
            checkpoint, backend=backend, max_keypoints=1024
        )
        assert model.backend == backend
        outputs[backend] = model(**inputs)
    a, b = outputs["torch"], outputs["onnxruntime"]
    assert torch.equal(a.mask, b.mask)
    for i in range(len(a.mask)):
        n = int(a.mask[i].sum())
        ka, sa, da = by_position(a.keypoints[i, :n], a.scores[i, :n], a.descriptors[i, :n])
        kb, sb, db = by_position(b.keypoints[i, :n], b.scores[i, :n], b.descriptors[i, :n])
        assert torch.equal(ka, kb)
        torch.testing.assert_close(sb, sa, atol=1e-5, rtol=0)
        torch.testing.assert_close(db, da, atol=1e-5, rtol=0)
    feats = keypoints.detect([str(p) for p in COCO], str(checkpoint), backend="onnxruntime")
    ref = keypoints.detect([str(p) for p in COCO], str(checkpoint), backend="torch")
    for f, r in zip(feats, ref):
        kf, df = by_position(f.keypoints, f.descriptors)
        kr, dr = by_position(r.keypoints, r.descriptors)
        assert torch.equal(kf, kr)
        torch.testing.assert_close(df, dr, atol=1e-5, rtol=0)


def test_fallback_to_torch_without_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now fails
    model = random_superpoint()
    with pytest.warns(UserWarning, match="onnxruntime is not installed"):
        model.set_backend("onnxruntime")
    assert model.backend == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.set_backend("auto").backend == "torch"
    out = model(torch.rand(1, 1, 32, 40))
    assert out["keypoints"].shape[0] == 1
    with pytest.raises(keypoints.ConfigError, match="did you mean 'torch'"):
        model.set_backend("torhc")


def test_export_onnx_round_trip(tmp_path, random_checkpoint):
    out = tmp_path / "superpoint.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "keypoints", "export", "onnx", str(random_checkpoint), str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "heatmap, descriptors" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = keypoints.SuperPoint.from_pretrained(random_checkpoint, backend="torch")
    image = torch.rand(2, 1, 72, 104)  # batch and size other than the export's example
    heat, dense = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        ref_heat, ref_dense = model.dense_torch(image)
    np.testing.assert_allclose(heat, ref_heat.numpy(), atol=1e-5)
    np.testing.assert_allclose(dense, ref_dense.numpy(), atol=1e-5)
    result = subprocess.run(
        [sys.executable, "-m", "keypoints", "export", "onnx", "sift", str(tmp_path / "s.onnx")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2 and "no ONNX graph" in result.stderr


def test_precision_options(monkeypatch):
    from keypoints.models import backends
    from keypoints.models.lightglue import LightGlueMatcher

    model = random_superpoint()
    with pytest.raises(keypoints.ConfigError, match="allowed: fp32, bf16, int8, fast"):
        model.set_precision("int4")
    assert model.set_precision("int8").precision == "int8"
    assert model.set_precision("fast").precision == "int8"  # SuperPoint's fastest
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    aliked = keypoints.load_model("aliked-t16")
    with pytest.warns(UserWarning, match="no int8 mode; running its fast precision"):
        assert aliked.set_precision("int8").precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "fast" and LightGlue's int8 choose silently
        assert aliked.set_precision("fast").precision == "bf16"
        assert LightGlueMatcher().set_precision("int8").precision == "bf16"
        monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
        assert model.set_precision("fast").precision == "bf16"
    with pytest.warns(UserWarning, match="onnxruntime, which is not installed"):
        assert model.set_precision("int8").precision == "bf16"
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        assert model.set_precision("bf16").precision == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert aliked.set_precision("fast").precision == "fp32"


def test_calibration_images_are_fixed_and_natural_looking():
    from keypoints.models.backends import CALIBRATION_COUNT, calibration_images

    gray, rgb = calibration_images(1), calibration_images(3, count=2, size=(48, 64))
    assert len(gray) == CALIBRATION_COUNT and gray[0].shape == (1, 1, 480, 640)
    assert rgb[0].shape == (1, 3, 48, 64) and rgb[0].dtype == np.float32
    again = calibration_images(1)
    assert all(np.array_equal(a, b) for a, b in zip(gray, again))  # the same on every machine
    for image in gray:
        assert image.min() >= 0 and image.max() <= 1
        assert image.std() > 0.1  # contrast, edges ...
        assert np.abs(np.diff(image, axis=-1)).mean() < 0.1  # ... and smooth areas


def test_int8_graph_is_made_once_per_weights(monkeypatch):
    from keypoints.models import backends

    model = random_superpoint(max_keypoints=64).set_precision("int8")
    image = torch.rand(1, 1, 64, 96)
    first = model(image)
    made = sorted((backends.cache_dir() / "onnx").glob("superpoint-*-int8-*.onnx"))
    assert made

    def refuse(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(backends, "quantize_int8", refuse)
    twin = random_superpoint(max_keypoints=64).set_precision("int8")  # same weights: cached
    torch.testing.assert_close(twin(image)["keypoints"], first["keypoints"])
    with torch.no_grad():
        twin.convDb.bias.add_(1.0)  # other weights: another graph
    with pytest.raises(AssertionError, match="quantized again"):
        twin(image)


@pytest.mark.slow
def test_int8_superpoint_descriptors_keep_their_accuracy():
    """SuperPoint's released descriptors in int8: on graf and wall 1-2 and 1-3, at ALIKED's
    keypoints, dense descriptors agree with fp32 (cosine) and MMA@3 of mutual nearest
    neighbours moves by at most 0.01 (measured on the 15 Oxford pairs: fp32 0.460, int8
    0.463; benchmarks/fast_accuracy.py)."""
    from keypoints.evaluation.datasets import load_dataset
    from keypoints.evaluation.metrics import matching_accuracy
    from keypoints.image import to_array

    oxford = require(COCO[0].parents[2] / "homography" / "oxford_affine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keypoints.SuperPoint.from_pretrained(require(PARTIAL_SUPERPOINT), strict=False)
    aliked = keypoints.load_model("aliked-n16rot", max_keypoints=1024, threshold=0.0)

    def describe(path):
        gray = torch.from_numpy(to_array(path).astype(np.float32) / 255)
        gray = (gray @ torch.tensor([0.2989, 0.587, 0.114]))[None, None]
        anchors = keypoints.detect(str(path), aliked)[0]
        with torch.inference_mode():
            _, dense = model.dense(gray)
        described = ops.sample_descriptors(anchors.keypoints[None], dense, 8)[0]
        return keypoints.Features(anchors.keypoints, anchors.scores, described,
                                  anchors.image_size, "superpoint"), dense  # fmt: skip

    mma = {"fp32": [], "int8": []}
    sequences = [s for s in load_dataset(oxford) if s.name in ("graf", "wall")]
    for sequence in sequences:
        for pair in sequence.pairs[:2]:
            found = {}
            for precision in mma:
                model.set_precision(precision)
                (f0, d0), (f1, _) = describe(pair.path0), describe(pair.path1)
                found[precision] = d0
                idx = keypoints.match(f0, f1, "mnn").indices.numpy()
                k0, k1 = f0.keypoints.numpy(), f1.keypoints.numpy()
                mma[precision].append(matching_accuracy(k0, k1, idx, pair.homography, (3,))[0])
            cosine = F.cosine_similarity(found["int8"], found["fp32"], dim=1)
            assert cosine.mean() > 0.99 and cosine.min() > 0.9
    assert abs(np.mean(mma["int8"]) - np.mean(mma["fp32"])) <= 0.01
    assert np.mean(mma["fp32"]) > 0.5  # real descriptors match (random ones would not)


bf16_cpu = pytest.mark.skipif(
    not cpu_has_bf16(),
    reason="this CPU has no native bfloat16 (avx512_bf16 or AMX)",
)


@bf16_cpu
def test_bf16_keypoints_stay_close():
    """Measured: 98.5% of aliked-n16's keypoints on the cats image move by less than 0.5 px."""
    fast = keypoints.detect(str(COCO[0]), "aliked-n16", precision="bf16")[0]
    exact = keypoints.detect(str(COCO[0]), "aliked-n16")[0]
    assert abs(len(fast) - len(exact)) <= 0.05 * len(exact)
    shift = torch.cdist(fast.keypoints, exact.keypoints).min(1).values
    assert (shift < 0.5).float().mean() > 0.9


@bf16_cpu
@pytest.mark.slow
def test_fast_mode_accuracy_cost_on_graf():
    """The default pipeline's fast mode (ALIKED bf16 + LightGlue bf16) ships only if MMA@3
    moves by at most 0.01 and H@5 is unchanged (measured on the 15 Oxford pairs: MMA@3 0.840
    -> 0.839, H@5 0.800 both)."""
    from keypoints.evaluation import evaluate_homography

    graf = require(COCO[0].parents[2] / "homography" / "oxford_affine" / "graf")
    name = keypoints.defaults.DEFAULT_MODEL
    results = {p: evaluate_homography(graf, [name], precision=p)[name] for p in ("fp32", "fast")}
    fp32, fast = results["fp32"], results["fast"]
    assert fp32["matcher"] == fast["matcher"] == "lightglue"
    assert abs(fast["mma"]["3"] - fp32["mma"]["3"]) <= 0.01
    assert fast["homography_accuracy"]["5"] == fp32["homography_accuracy"]["5"]


_THREADS_SCRIPT = r"""
import sys, threading
import numpy as np
import keypoints
from keypoints.models.registry import load_model

image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(sys.argv[1]).convert("RGB"))
models = [load_model(), load_model(sys.argv[2], backend="onnxruntime")]
results, errors = {}, []
barrier = threading.Barrier(8)

def run(i):
    try:
        barrier.wait()
        results[i] = keypoints.detect(image, models[i % 2], max_keypoints=300)[0]
    except BaseException as error:
        errors.append(repr(error))

threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
for i in range(2, 8):
    np.testing.assert_array_equal(results[i].keypoints.numpy(), results[i % 2].keypoints.numpy())
print("ok", len(results))
"""


def test_eight_threads_on_a_cold_cache(tmp_path, random_checkpoint):
    """Eight threads call detect at once on a cold ONNX cache (the default model's NMS graph and
    a SuperPoint dense graph): every call succeeds, each graph is exported once."""
    from conftest import EXAMPLE

    env = {**__import__("os").environ, "KEYPOINTS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(EXAMPLE),
                           str(random_checkpoint), str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok 8")
    graphs = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert graphs == ["nms", "nms", "superpoint"]  # both models' NMS radii, one dense graph
    assert not list((tmp_path / "cache" / "onnx").glob("*.tmp"))


def test_corrupt_cache_entries_heal_and_unwritable_caches_fall_back(
    tmp_path, monkeypatch, random_checkpoint
):
    """An empty or corrupt cached graph is deleted and made again (a warning, the same result);
    a cache folder that cannot be written falls back to a private temporary one."""
    from conftest import EXAMPLE

    from keypoints.models import backends
    from keypoints.models.registry import load_model

    cache = tmp_path / "cache"
    monkeypatch.setenv("KEYPOINTS_CACHE", str(cache))
    monkeypatch.setattr(backends, "_NMS_SESSIONS", {})
    model = load_model(random_checkpoint, backend="onnxruntime")
    expected = keypoints.detect(EXAMPLE, model, max_keypoints=300)[0]
    graphs = sorted((cache / "onnx").glob("*.onnx"))
    assert len(graphs) == 2  # the dense graph and the NMS
    for damage in (b"", b"\x08garbage protobuf"):
        for graph in graphs:
            graph.write_bytes(damage)
        monkeypatch.setattr(backends, "_NMS_SESSIONS", {})
        fresh = load_model(random_checkpoint, backend="onnxruntime")
        with pytest.warns(UserWarning, match="cannot be loaded.*making it again") as caught:
            got = keypoints.detect(EXAMPLE, fresh, max_keypoints=300)[0]
        assert len([w for w in caught if "making it again" in str(w.message)]) == 2
        assert torch.equal(got.keypoints, expected.keypoints)
        assert all(graph.stat().st_size > 100 for graph in graphs)

    blocked = tmp_path / "a-file"
    blocked.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("KEYPOINTS_CACHE", str(blocked / "cache"))
    fallback = tmp_path / "tmp"
    monkeypatch.setattr(backends, "_fallback_dir", lambda: fallback / "onnx")
    monkeypatch.setattr(backends, "_NMS_SESSIONS", {})
    fresh = load_model(random_checkpoint, backend="onnxruntime")
    with pytest.warns(UserWarning, match="is not writable.*KEYPOINTS_CACHE"):
        got = keypoints.detect(EXAMPLE, fresh, max_keypoints=300)[0]
    assert torch.equal(got.keypoints, expected.keypoints)
    assert len(list((fallback / "onnx").glob("*.onnx"))) == 2
