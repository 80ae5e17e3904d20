"""Hostile input: a corpus of bad (and odd but valid) inputs through the Python API and the CLI,
property-based tests of the processor and post-processing, determinism, and a batch with bad
files mixed in. docs/robustness.md lists each kind with what happens and the test here."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, EXAMPLE, random_superpoint, require
from PIL import Image

import keypoints
from keypoints.errors import ConfigError, ImageError, ImageNotFoundError, KeypointsError

MODEL = "aliked-t16"
FAST = {"resize": 256}


def _rgb(height=120, width=160, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((width, height)))
    return np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)


def _save(path, image: Image.Image, **kwargs):
    image.save(path, **kwargs)
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _truncated(path, fmt: str):
    buffer = io.BytesIO()
    Image.fromarray(_rgb(300, 400)).save(buffer, fmt)
    path.write_bytes(buffer.getvalue()[: buffer.tell() // 2])
    return path


def _exif_rotated(path):
    image = Image.fromarray(_rgb(120, 160))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(path, exif=exif)
    return path


def _gif(path):
    frames = [Image.fromarray(_rgb(seed=i)).convert("P") for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


# name -> (make(tmp_path) -> input, expected error type and message, or None for success)
FILES = {
    "missing file": (lambda t: t / "missing.jpg", ImageNotFoundError, "does not exist"),
    "empty file": (lambda t: _write(t / "e.jpg", b""), ImageError, "empty"),
    "not an image": (lambda t: _write(t / "x.png", b"hello"), ImageError, "not an image"),
    "truncated JPEG": (lambda t: _truncated(t / "cut.jpg", "JPEG"), ImageError, "truncated"),
    "truncated PNG": (lambda t: _truncated(t / "cut.png", "PNG"), ImageError, "truncated"),
    "a directory": (lambda t: t, ImageError, "directory"),
    "palette PNG (P)": (
        lambda t: _save(t / "p.png", Image.fromarray(_rgb()).convert("P")),
        None,
        None,
    ),  # fmt: skip
    "gray + alpha (LA)": (
        lambda t: _save(t / "la.png", Image.fromarray(_rgb()).convert("LA")),
        None,
        None,
    ),  # fmt: skip
    "RGBA": (
        lambda t: _save(t / "rgba.png", Image.fromarray(_rgb()).convert("RGBA")),
        None,
        None,
    ),  # fmt: skip
    "CMYK JPEG": (
        lambda t: _save(t / "cmyk.jpg", Image.fromarray(_rgb()).convert("CMYK")),
        None,
        None,
    ),  # fmt: skip
    "16-bit PNG (I;16)": (
        lambda t: _save(t / "16.png", Image.fromarray(_rgb()[..., 0].astype(np.uint16) * 257)),
        None,
        None,
    ),  # fmt: skip
    "32-bit float TIFF": (
        lambda t: _save(t / "f.tif", Image.fromarray(_rgb()[..., 1].astype(np.float32) / 255)),
        None,
        None,
    ),  # fmt: skip
    "multi-frame GIF": (lambda t: _gif(t / "anim.gif"), None, None),
    "EXIF-rotated JPEG": (lambda t: _exif_rotated(t / "rot.jpg"), None, None),
    "tiny image (4x4)": (lambda t: _save(t / "tiny.png", Image.fromarray(_rgb(4, 4))), None, None),
    "one pixel": (lambda t: _save(t / "one.png", Image.fromarray(_rgb(1, 1))), None, None),
}
ARRAYS = {
    "zero-sized array": (np.zeros((0, 10, 3), np.uint8), "empty"),
    "NaN in a float array": (np.full((20, 20), np.nan, np.float32), "NaN"),
    "inf in a float array": (np.full((20, 20), np.inf, np.float32), "NaN or infinite"),
    "two channels": (np.zeros((20, 20, 2), np.uint8), "2 channels"),
    "five channels": (np.zeros((20, 20, 5), np.uint8), "5 channels"),
    "4-D array": (np.zeros((1, 20, 20, 3), np.uint8), "shape"),
    "int64 dtype": (np.zeros((20, 20), np.int64), "dtype"),
    "complex dtype": (np.zeros((20, 20), np.complex64), "dtype"),
    "float out of [0, 1]": (np.full((20, 20), 255.0, np.float32), r"\[0, 1\]"),
    "tensor (H, W, C) instead of (C, H, W)": (torch.zeros(20, 20, 3), "channels"),
}
OPTIONS = {
    "max_keypoints=0": ({"max_keypoints": 0}, "max_keypoints"),
    "threshold=2": ({"threshold": 2.0}, r"\[0, 1\]"),
    "threshold=-0.5": ({"threshold": -0.5}, r"\[0, 1\]"),
    "nms_radius=-1": ({"nms_radius": -1}, "nms_radius"),
    "unknown option": ({"nms_raduis": 2}, "did you mean 'nms_radius'"),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_files_through_the_python_api(kind, tmp_path):
    make, error, message = FILES[kind]
    source = make(tmp_path)
    if error is not None:
        with pytest.raises(error, match=message):
            keypoints.detect(source, MODEL, **FAST)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        features = keypoints.detect(source, MODEL, **FAST)[0]
    width, height = features.image_size
    if kind == "multi-frame GIF":
        assert any("frames; using the first" in str(w.message) for w in caught)
    if kind == "EXIF-rotated JPEG":
        assert (width, height) == (120, 160)  # as displayed: portrait
    if kind.startswith(("tiny", "one pixel")):
        assert len(features) == 0 and features.descriptors.shape == (0, 64)
    else:
        assert len(features) > 0
    k = features.keypoints
    assert ((k >= 0) & (k <= torch.tensor([width - 1, height - 1]))).all()


@pytest.mark.parametrize("kind", list(FILES))
def test_files_through_the_cli(kind, tmp_path, capsys):
    from keypoints.cli import main

    make, error, _ = FILES[kind]
    source = make(tmp_path)
    code = main(["detect", str(source), "-m", MODEL, "--resize", "256", "--no-plot",
                 "-o", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == (2 if error is not None else 0), err
    if error is not None:
        assert "keypoints: error:" in err


@pytest.mark.parametrize("kind", list(ARRAYS))
def test_arrays(kind):
    array, message = ARRAYS[kind]
    with pytest.raises(ImageError, match=message):
        keypoints.detect(array, MODEL)


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_options_python_and_cli(kind, tmp_path, capsys):
    from keypoints.cli import main

    options, message = OPTIONS[kind]
    with pytest.raises(ConfigError, match=message):
        keypoints.detect(str(EXAMPLE), MODEL, **options)
    if kind == "unknown option":
        return
    (name, value), = options.items()  # fmt: skip
    flag = "--" + name.replace("_", "-")
    code = main(["detect", str(EXAMPLE), "-m", MODEL, flag, str(value), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1


def test_resize_zero_and_pixel_limit(tmp_path, capsys):
    from keypoints.cli import main

    with pytest.raises(ConfigError, match="resize"):
        keypoints.detect(str(EXAMPLE), MODEL, resize=0)
    with pytest.raises(ImageError, match="over the limit"):
        keypoints.detect(str(EXAMPLE), MODEL, max_pixels=1000)
    code = main(["detect", str(EXAMPLE), "-m", MODEL, "--max-pixels", "1000", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "over the limit" in err and "Traceback" not in err


def test_a_batch_with_bad_files_keeps_the_good_results(tmp_path):
    """CLI detect over good and bad files in batches: every good file's result is written and
    equals processing it alone; the bad ones are reported; exit code 2."""
    from keypoints.cli import main

    good = [_save(tmp_path / f"good{i}.png", Image.fromarray(_rgb(120, 160, seed=i)))
            for i in range(3)]  # fmt: skip
    bad = [FILES["truncated JPEG"][0](tmp_path), FILES["not an image"][0](tmp_path)]
    order = [good[0], bad[0], good[1], bad[1], good[2]]
    out = tmp_path / "out"
    code = main(["detect", *map(str, order), "-m", MODEL, "--batch-size", "4", "--no-plot",
                 "-o", str(out)])  # fmt: skip
    assert code == 2
    for path in good:
        saved = keypoints.load_features(out / f"{path.stem}.npz")
        alone = keypoints.detect(path, MODEL)[0]
        assert torch.equal(saved.keypoints, alone.keypoints)
        torch.testing.assert_close(saved.descriptors, alone.descriptors, atol=1e-5, rtol=0)
    assert not (out / "cut.npz").exists() and not (out / "x.npz").exists()


def test_determinism_and_batch_composition():
    """The same input twice gives bit-identical results; an image alone or in a batch with
    images of other sizes gives the same result within 1e-5 (every model in the registry that
    batches: ALIKED and SuperPoint)."""
    images = [_rgb(120, 160, 0), _rgb(96, 128, 1), _rgb(120, 160, 2)]
    for model in (MODEL, random_superpoint()):
        first = keypoints.detect(images, model, resize=None)
        second = keypoints.detect(images, model, resize=None)
        for a, b in zip(first, second):
            assert torch.equal(a.keypoints, b.keypoints)
            assert torch.equal(a.descriptors, b.descriptors)
        for image, batched in zip(images, first):
            alone = keypoints.detect(image, model, resize=None)[0]
            assert torch.equal(alone.keypoints, batched.keypoints)
            torch.testing.assert_close(alone.descriptors, batched.descriptors, atol=1e-5,
                                       rtol=0)  # fmt: skip


# property-based tests -------------------------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def arrays(draw):
    """Random images: 1..2000 pixels per side (kept under ~1 Mpx), 1, 3 or 4 channels or
    none, uint8 / uint16 / float32 in [0, 1]."""
    height = draw(st.integers(1, 2000))
    width = draw(st.integers(1, max(1, min(2000, 1_000_000 // height))))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    shape = (height, width) if channels is None else (height, width, channels)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if dtype is np.float32:
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@SETTINGS
@given(image=arrays(), grayscale=st.booleans())
def test_processor_never_crashes(image, grayscale):
    processor = keypoints.SuperPointImageProcessor(do_grayscale=grayscale)
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 480, 640) and pixels.dtype == torch.float32
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 1


@SETTINGS
@given(
    size=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    max_keypoints=st.integers(-1, 50).filter(lambda k: k != 0),
    threshold=st.floats(0, 1),
    nms_radius=st.integers(0, 6),
    seed=st.integers(0, 100),
)
def test_model_and_post_processing_invariants(size, max_keypoints, threshold, nms_radius, seed):
    """Random image sizes and options: outputs satisfy the documented invariants."""
    model = _facade()
    height, width = size
    pixels = torch.rand(2, 3, 8 * -(-height // 8), 8 * -(-width // 8),
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    model.config = model.config.replace(
        max_keypoints=max_keypoints, keypoint_threshold=threshold, nms_radius=nms_radius
    )
    outputs = model(pixels)
    counts = outputs.mask.sum(1)
    assert outputs.mask.dtype == torch.int32
    assert ((outputs.keypoints >= 0) & (outputs.keypoints <= 1)).all()  # relative coordinates
    if max_keypoints > 0:
        assert int(counts.max()) <= max_keypoints
    sizes = [(height, width)] * 2
    for n, result in zip(counts.tolist(), keypoints.SuperPointImageProcessor()
                         .post_process_keypoint_detection(outputs, sizes)):  # fmt: skip
        assert len(result["keypoints"]) == len(result["scores"]) == n
        k = result["keypoints"]
        assert ((k[:, 0] >= 0) & (k[:, 0] <= width) & (k[:, 1] >= 0) & (k[:, 1] <= height)).all()
        scores = result["scores"]
        assert ((scores >= threshold) & (scores <= 1)).all()
        if n:
            norms = result["descriptors"].norm(dim=1)
            torch.testing.assert_close(norms, torch.ones(n), atol=1e-4, rtol=0)


_FACADE = []


def _facade():
    if not _FACADE:
        _FACADE.append(random_superpoint(keypoints.SuperPointForKeypointDetection))
    return _FACADE[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=arrays(), max_keypoints=st.integers(1, 300), threshold=st.floats(0, 1))
def test_detect_invariants(image, max_keypoints, threshold):
    """keypoints.detect on random images: our errors only; keypoints inside the image, scores
    in [0, 1], unit-norm descriptors, at most max_keypoints."""
    try:
        features = keypoints.detect(image, MODEL, resize=512, max_keypoints=max_keypoints,
                                    threshold=threshold)[0]  # fmt: skip
    except KeypointsError:
        return
    width, height = features.image_size
    assert (width, height) == (image.shape[1], image.shape[0])
    assert len(features) <= max_keypoints
    k = features.keypoints
    assert ((k >= 0) & (k <= torch.tensor([width - 1.0, height - 1.0]))).all()
    assert ((features.scores >= 0) & (features.scores <= 1)).all()
    if len(features):
        norms = features.descriptors.norm(dim=1)
        torch.testing.assert_close(norms, torch.ones(len(features)), atol=1e-4, rtol=0)


def test_interrupted_writes_leave_no_partial_file(tmp_path):
    """Every file we write goes through atomic_write: an exception (or a kill) mid-write leaves
    the final name absent, or unchanged when it existed, and no temporary file behind."""
    from keypoints.io import atomic_write

    def fails(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half of it")
        raise KeyboardInterrupt

    target = tmp_path / "features.npz"
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fails)
    assert list(tmp_path.iterdir()) == []
    target.write_text("the old content")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fails)
    assert target.read_text() == "the old content" and list(tmp_path.iterdir()) == [target]


def test_written_files_follow_the_umask_and_keep_their_mode(tmp_path):
    """Results on a shared machine are readable as the umask says (not 0600 as a temporary
    file), and a replaced file keeps its permissions."""
    from keypoints.io import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("data")

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.txt", write)
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write(tmp_path / "private.txt", write)
        assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
        (tmp_path / "new.txt").chmod(0o640)
        atomic_write(tmp_path / "new.txt", write)  # replaced: keeps 0640 whatever the umask
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_unexpected_errors_exit_1_and_point_to_debug(monkeypatch, capsys):
    from keypoints.cli import main
    from keypoints.models import registry

    def boom():
        raise RuntimeError("boom")

    monkeypatch.setattr(registry, "list_models", boom)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "unexpected error: RuntimeError: boom" in err and "--debug" in err
    assert "Traceback" not in err
    assert main(["--debug", "models"]) == 1
    assert "Traceback" in capsys.readouterr().err


_UNDER_RLIMIT = r"""
import resource, sys
limit = int(sys.argv[1]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from keypoints.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _cli_under_rlimit(megabytes: int, *args):
    """The CLI in a subprocess whose address space is capped (RLIMIT_AS)."""
    return subprocess.run([sys.executable, "-c", _UNDER_RLIMIT, str(megabytes), *map(str, args)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_memory_budgets_under_rlimit_as(tmp_path):
    """Memory stays bounded where it once exploded, in a process capped at 3 GiB of address
    space: a match figure of a 1x500 and an 8x100000 image (once a 23 GB canvas), and a
    9000x9000 JPEG (once 3.4 GB: a float64 copy of the image); an exact resize over the pixel
    limit is refused before anything is allocated."""
    thin, tall = tmp_path / "thin.png", tmp_path / "tall.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((500, 1)) * 255).astype(np.uint8)).save(thin)
    Image.fromarray((rng.random((100000, 8)) * 255).astype(np.uint8)).save(tall)
    figure = tmp_path / "m.png"
    done = _cli_under_rlimit(3072, "match", thin, tall, "-m", "sift", "-o", figure)
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(figure) as picture:
        assert max(picture.size) <= 16 * 100  # MAX_FIGURE_INCHES at 100 dpi

    big = tmp_path / "big.jpg"
    small = (rng.random((900, 900, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((9000, 9000)).save(big, quality=90)
    done = _cli_under_rlimit(3072, "detect", big, "-o", tmp_path / "out", "--no-plot")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "keypoints" in done.stdout

    done = _cli_under_rlimit(3072, "detect", thin, "--resize", "20000x20000", "-o", tmp_path)
    assert done.returncode == 2
    assert "resize 20000x20000 (height x width) is 400000000 pixels, over the limit" in done.stderr


def test_large_images_are_drawn_shrunk_in_original_coordinates():
    """Plots shrink huge images for display (at most MAX_DISPLAY_SIDE pixels) but keep the axes
    in original pixels, so the keypoints land where they belong."""
    import matplotlib

    matplotlib.use("Agg")
    from keypoints.features import Features, Matches
    from keypoints.viz import MAX_DISPLAY_SIDE, plot_keypoints, plot_matches

    image = np.zeros((6000, 9000, 3), np.uint8)
    image[2000:2100, 7000:7100] = 255
    features = Features(
        keypoints=torch.tensor([[7049.5, 2049.5]]), scores=torch.ones(1),
        descriptors=torch.ones(1, 4), image_size=(9000, 6000),
    )  # fmt: skip
    fig = plot_keypoints(image, features)
    shown = fig.axes[0].images[0]
    assert max(shown.get_array().shape[:2]) == MAX_DISPLAY_SIDE
    assert tuple(shown.get_extent()) == (-0.5, 8999.5, 5999.5, -0.5)
    matches = Matches(indices=torch.tensor([[0, 0]]), scores=None, distances=torch.zeros(1))
    fig = plot_matches(image, image[:, :50], features, features, matches)
    shown = fig.axes[0].images[0]
    assert max(shown.get_array().shape[:2]) == MAX_DISPLAY_SIDE
    assert shown.get_extent()[1] == 9000 + 10 + 50 - 0.5
    width, height = fig.get_size_inches()
    assert max(width, height) <= 16.5


def test_api_results_are_right_or_refused(tmp_path):
    """Once silent wrong results: a negative batch size, a NaN descriptor row, JSON round trips
    of binary and SIFT features, the model name after an npz reload, numpy scalar options."""
    from keypoints.io import load_features, save_features

    image = str(DATA / "homography" / "oxford_affine" / "graf" / "img1.ppm")
    require(Path(image))
    with pytest.raises(keypoints.ConfigError, match="batch_size must be >= 1"):
        keypoints.detect(image, "aliked-t16", batch_size=-1)

    features = keypoints.detect(image, "aliked-t16", max_keypoints=200)[0]
    other = keypoints.detect(str(Path(image).with_name("img2.ppm")), "aliked-t16",
                             max_keypoints=200)[0]  # fmt: skip
    clean = keypoints.match(features, other, method="mnn")
    poisoned = features.descriptors.clone()
    poisoned[0] = float("nan")
    broken = keypoints.Features(keypoints=features.keypoints, scores=features.scores,
                                descriptors=poisoned, image_size=features.image_size)  # fmt: skip
    # as if the row were absent (matching the other rows alone, indices shifted back)
    rest = keypoints.Features(keypoints=features.keypoints[1:], scores=features.scores[1:],
                              descriptors=features.descriptors[1:],
                              image_size=features.image_size)  # fmt: skip
    expected = keypoints.match(rest, other, method="mnn").indices + torch.tensor([1, 0])
    got = keypoints.match(broken, other, method="mnn")
    assert len(clean) > 20 and len(got) >= len(clean) - 1 and torch.equal(got.indices, expected)
    expected = keypoints.match(other, rest, method="mnn").indices + torch.tensor([0, 1])
    assert torch.equal(keypoints.match(other, broken, method="mnn").indices, expected)

    for model in ("orb", "sift"):
        found = keypoints.detect(image, model, max_keypoints=100)[0]
        for fmt in ("npz", "json"):
            back = load_features(save_features(found, tmp_path / f"{model}.{fmt}"))
            assert back.binary == found.binary and back.model == model
            assert back.descriptors.dtype == found.descriptors.dtype
            assert torch.equal(back.descriptors, found.descriptors)
            assert torch.equal(back.scales, found.scales)
            assert torch.equal(back.orientations, found.orientations)
    reloaded = [load_features(save_features(f, tmp_path / f"{i}.npz"))
                for i, f in enumerate(keypoints.detect([image, image], "aliked-n16"))]  # fmt: skip
    assert reloaded[0].model == "aliked-n16"
    assert keypoints.match(*reloaded).method == "lightglue"  # it can pick the weights

    as_numpy = keypoints.detect(image, "aliked-t16", threshold=np.float32(0.25),
                                nms_radius=np.int64(3), max_keypoints=np.int64(100))[0]  # fmt: skip
    as_python = keypoints.detect(image, "aliked-t16", threshold=float(np.float32(0.25)),
                                 nms_radius=3, max_keypoints=100)[0]  # fmt: skip
    assert torch.equal(as_numpy.keypoints, as_python.keypoints)


def test_damaged_weights_are_refused(tmp_path):
    """NaN weights and integer weights once loaded silently and found 0 keypoints."""
    from safetensors.torch import save_file

    from keypoints.models.registry import load_model

    state = {k: v.contiguous().clone() for k, v in load_model("aliked-t16").state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim > 1)
    nan = dict(state)
    nan[name] = nan[name].clone()
    nan[name].view(-1)[0] = float("nan")
    save_file(nan, tmp_path / "nan.safetensors")
    save_file({k: v.to(torch.int32) if v.is_floating_point() else v for k, v in state.items()},
              tmp_path / "int.safetensors")  # fmt: skip
    with pytest.raises(keypoints.WeightsError, match=f"NaN or infinite values in {name}"):
        load_model(tmp_path / "nan.safetensors")
    with pytest.raises(keypoints.WeightsError, match="integer tensors where floats"):
        load_model(tmp_path / "int.safetensors")


def _keypoints_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "keypoints", *map(str, args)],
                          capture_output=True, text=True, timeout=600, **kwargs)  # fmt: skip


def _read_only_mounts_work() -> bool:
    import shutil

    if os.geteuid() != 0:
        return True  # chmod is enough
    if not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp && "
                           "mount -o remount,ro,bind /tmp"], capture_output=True)  # fmt: skip
    return done.returncode == 0


def _cli_with_read_only(folder, *args):
    """The CLI with ``folder`` read-only: chmod, or as root a read-only bind mount in a private
    mount namespace (root ignores permissions)."""
    import shlex

    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            return _keypoints_cli(*args)
        finally:
            os.chmod(folder, 0o755)
    command = " ".join(shlex.quote(str(a)) for a in (sys.executable, "-m", "keypoints", *args))
    script = (f"mount --bind {shlex.quote(str(folder))} {shlex.quote(str(folder))} && "
              f"mount -o remount,ro,bind {shlex.quote(str(folder))} && exec {command}")  # fmt: skip
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.mark.slow
def test_environment_faults_end_in_one_line_and_exit_2(tmp_path):
    """Read-only output folders, a file-size limit hit mid-extraction (EFBIG through
    RLIMIT_FSIZE, as a full disk), names over 255 bytes, a device that does not exist: one line
    naming the file or device and what to do, exit code 2, and nothing already written lost."""
    from keypoints.io.hloc import list_names, read_features

    images = tmp_path / "images"
    images.mkdir()
    for i in range(1, 5):
        source = require(DATA / "homography" / "oxford_affine" / "graf" / f"img{i}.ppm")
        (images / f"img{i}.ppm").write_bytes(source.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    common = ("-m", "aliked-t16", "--resize", "320", "--max-keypoints", "300")
    if _read_only_mounts_work():
        done = _cli_with_read_only(out, "extract", images, "-o", out / "f.h5", *common)
        assert done.returncode == 2 and "is the folder writable?" in done.stderr
        done = _cli_with_read_only(out, "detect", images / "img1.ppm", "-o", out, *common)
        assert done.returncode == 2
        assert f"{out / 'img1.npz'}: the file system is read-only" in done.stderr

    # a file-size limit reached while writing shards: the run stops with one line; what was
    # complete is kept, and the rerun without the limit finishes with the full result
    limited = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000)); "
        "from keypoints.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    output = out / "f.h5"
    done = subprocess.run([sys.executable, "-c", limited, "extract", str(images), "-o",
                           str(output), "--shard-size", "1", *common],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "over the size limit" in done.stderr and "Traceback" not in done.stderr
    assert not output.exists() or len(list_names(output)) < 4  # readable, partial
    done = _keypoints_cli("extract", images, "-o", output, "--shard-size", "1", *common)
    assert done.returncode == 0, done.stderr
    reference = keypoints.extract(images, tmp_path / "reference.h5", "aliked-t16", resize=320,
                                  max_keypoints=300, progress=False)  # fmt: skip
    assert list_names(output) == list_names(reference)
    for name in list_names(reference):
        assert torch.equal(read_features(output, name).keypoints,
                           read_features(reference, name).keypoints)  # fmt: skip

    # a name over 255 bytes: that image fails, the others are written
    long_name = images / ("x" * 300 + ".ppm")
    done = _keypoints_cli("detect", long_name, images / "img2.ppm", "-o", out / "d", *common)
    assert done.returncode == 2 and "the file name is too long" in done.stderr
    assert (out / "d" / "img2.npz").is_file()

    done = _keypoints_cli("detect", images / "img1.ppm", "--device", "cuda:7", "-o", out, *common)
    assert done.returncode == 2 and "device 'cuda:7' is not available" in done.stderr
