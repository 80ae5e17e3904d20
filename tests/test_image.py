"""Image decoding and validation: modes, bit depths, orientation, and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import COCO, EXAMPLE, require
from PIL import Image

import keypoints
from keypoints import ImageError, ImageNotFoundError
from keypoints.image import resized_shape, scale_keypoints_back, to_array

GRADIENT = (np.add.outer(np.arange(30), np.arange(40)) * 3 % 256).astype(np.uint8)


@pytest.mark.parametrize(
    "mode,channels,dtype",
    [("L", 1, np.uint8), ("LA", 1, np.uint8), ("P", 3, np.uint8), ("RGB", 3, np.uint8),
     ("RGBA", 3, np.uint8), ("CMYK", 3, np.uint8), ("1", 1, np.uint8)],
)  # fmt: skip
def test_pil_modes(tmp_path, mode, channels, dtype):
    image = Image.fromarray(GRADIENT).convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    image.save(path)
    array = to_array(path)
    assert array.shape == (30, 40, channels) and array.dtype == dtype


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    deep = GRADIENT.astype(np.uint16) * 257
    Image.fromarray(deep).save(tmp_path / "deep.png")
    array = to_array(tmp_path / "deep.png")
    assert array.dtype == np.float32 and array.shape == (30, 40, 1)
    np.testing.assert_allclose(array[..., 0], GRADIENT / 255.0, atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.dstack([GRADIENT] * 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    image.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert to_array(tmp_path / "rot.jpg").shape == (40, 30, 3)


def test_arrays_and_tensors():
    assert to_array(GRADIENT).shape == (30, 40, 1)
    rgba = np.dstack([GRADIENT] * 4)
    assert to_array(rgba).shape == (30, 40, 3)
    assert to_array(torch.from_numpy(rgba.copy()).permute(2, 0, 1)).shape == (30, 40, 3)
    floats = to_array(GRADIENT / 255.0)
    assert floats.dtype == np.float32 and floats.max() <= 1


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((0, 5), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "2 channels"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros((4, 4), np.int64), "dtype int64"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.full((4, 4), 200.0), r"in \[0, 1\]"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(ImageError, match=message):
        to_array(array)


def test_bad_files(tmp_path):
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        to_array(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        to_array(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        to_array(tmp_path / "text.png")
    data = require(COCO[0]).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        to_array(tmp_path / "cut.png")
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([GRADIENT] * 3)).resize((400, 300)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: buffer.tell() // 2])
    with pytest.raises(ImageError, match="truncated"):
        to_array(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="over the limit"):
        to_array(GRADIENT, max_pixels=100)
    with pytest.raises(ImageError, match="unsupported image type"):
        to_array(42)


def test_resized_shape_and_coordinate_mapping():
    assert resized_shape(480, 640, 1024) == (480, 640)  # never upsamples
    assert resized_shape(1000, 2000, 1024) == (512, 1024)
    assert resized_shape(480, 640, (240, 320)) == (240, 320)
    assert resized_shape(7, 9, None) == (7, 9)
    # pixel centres at integers: the centre of the resized image maps to the original centre,
    # and resized pixel 0 covers original pixels 0..1 when halving (centre 0.5)
    kp = torch.tensor([[159.5, 119.5], [0.0, 0.0]])
    back = scale_keypoints_back(kp, (240, 320), (480, 640))
    torch.testing.assert_close(back, torch.tensor([[319.5, 239.5], [0.5, 0.5]]))


def test_resize_forms_share_one_convention():
    """Every exact form names its order; the CLI's 'WxH' and the Python forms agree."""
    from keypoints.image import Size, normalize_resize, resized_shape

    exact = [(480, 640), [480, 640], Size(height=480, width=640), {"height": 480, "width": 640},
             "640x480", "640X480", np.array([480, 640])]  # fmt: skip
    for form in exact:
        assert normalize_resize(form) == (480, 640), form
        assert resized_shape(480, 640, form) == (480, 640)
    assert normalize_resize("1024") == normalize_resize(1024) == 1024
    assert normalize_resize("none") is None and normalize_resize(None) is None
    for bad in ["640,480", (480, 640, 3), {"h": 480, "w": 640}, 0, (0, 5), True, "x480", 1.5]:
        with pytest.raises(keypoints.ConfigError, match="resize"):
            normalize_resize(bad)


def test_swapped_resize_tuple_warns_explicit_forms_do_not():
    """(640, 480) on a 640x480 (width x height) image is almost surely (width, height)."""
    import warnings

    from keypoints.image import Size, resized_shape

    with pytest.warns(UserWarning, match=r"resize=\(640, 480\) is \(height, width\)"):
        assert resized_shape(480, 640, (640, 480)) == (640, 480)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resized_shape(480, 640, Size(height=640, width=480))  # said on purpose
        resized_shape(480, 640, "480x640")
        resized_shape(480, 640, (240, 320))  # same orientation
        resized_shape(500, 520, (520, 500))  # square-ish: no orientation to flip


def test_detect_takes_every_resize_form_and_refuses_bad_ones_before_reading():
    a = keypoints.detect(EXAMPLE, "sift", resize=(240, 320))[0]
    for form in ("320x240", {"height": 240, "width": 320}, keypoints.Size(240, 320)):
        assert keypoints.detect(EXAMPLE, "sift", resize=form)[0] == a
    with pytest.raises(keypoints.ConfigError, match="'640,480' is not understood"):
        keypoints.detect("/no/such/image.png", "sift", resize="640,480")
