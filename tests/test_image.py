"""Image decoding and validation: modes, bit depths, orientation, and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import COCO, require
from PIL import Image

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
