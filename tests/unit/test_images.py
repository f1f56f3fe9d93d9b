"""Bad and odd image inputs: converted when they are images, refused with a clear message otherwise."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from semirest.core.data.images import ImageReadError, read_image, read_mask, to_uint8, write_png


def _gradient(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 4 + y * 2) % 256).astype(np.uint8)


def test_grayscale_becomes_rgb(tmp_path):
    g = _gradient()
    cv2.imwrite(str(tmp_path / "g.png"), g)
    img = read_image(tmp_path / "g.png")
    assert img.shape == (40, 60, 3) and img.dtype == np.uint8
    assert np.array_equal(img[:, :, 0], g) and np.array_equal(img[:, :, 2], g)


def test_rgba_drops_alpha_and_keeps_colour_order(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[..., 3] = 10  # almost transparent: the colour must still come through
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.shape == (10, 12, 3)
    assert img[0, 0].tolist() == [200, 0, 0]


def test_16bit_is_scaled_not_clipped(tmp_path):
    g16 = (np.arange(0, 65536, 64, dtype=np.uint32).reshape(32, 32)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.tif"), g16)
    img = read_image(tmp_path / "g16.tif")
    assert img.dtype == np.uint8
    assert img[..., 0].min() == 0 and img[..., 0].max() == 255
    assert np.array_equal(img[..., 0], to_uint8(g16))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 2] = 220  # blue
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    img = read_image(tmp_path / "cmyk.jpg")
    assert img.shape == (16, 16, 3)
    r, g, b = img[8, 8].astype(int)
    assert b > 150 and r < 80 and g < 80


def test_unicode_and_space_path(tmp_path):
    folder = tmp_path / "Prüfung bilder äöü 検査"
    folder.mkdir()
    write_png(folder / "teil 1.png", _gradient())
    assert read_image(folder / "teil 1.png").shape == (40, 60, 3)


def test_truncated_png_is_refused_with_the_path(tmp_path):
    write_png(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match=r"cut\.png: not a readable image"):
        read_image(tmp_path / "cut.png")


def test_text_file_with_image_extension_is_refused(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not an image")
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(tmp_path / "notes.jpg")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="file is empty"):
        read_image(tmp_path / "empty.png")


def test_mask_of_wrong_size_is_refused(tmp_path):
    write_png(tmp_path / "m.png", np.ones((30, 40), bool))
    assert read_mask(tmp_path / "m.png", (30, 40)).all()
    with pytest.raises(ImageReadError, match=r"mask is 40x30 pixels but its image is 50x30"):
        read_mask(tmp_path / "m.png", (30, 50))


def test_grey_level_mask_counts_any_nonzero(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[2, 3] = 1
    m[5, 5] = 128
    cv2.imwrite(str(tmp_path / "m.png"), m)
    assert read_mask(tmp_path / "m.png").sum() == 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_other_tools_show_the_image(tmp_path, orientation):
    from PIL import Image, ImageOps

    from semirest.core.data.images import read_image, read_mask

    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)  # not square: a quarter turn shows
    exif = Image.Exif()
    exif[0x0112] = orientation
    for ext in ("png", "jpg"):
        p = tmp_path / f"photo.{ext}"
        Image.fromarray(stored).save(p, exif=exif.tobytes(), **({"quality": 98} if ext == "jpg" else {}))
        with Image.open(p) as im:
            upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        got = read_image(p)
        assert got.shape == upright.shape
        if ext == "png":
            assert np.array_equal(got, upright)
        else:  # two JPEG decoders: the same picture within a few grey levels
            assert np.abs(got.astype(int) - upright.astype(int)).mean() < 3
    m = np.zeros((30, 50), np.uint8)
    m[2:5, 40:48] = 255
    Image.fromarray(m).save(tmp_path / "mask.png", exif=exif.tobytes())
    with Image.open(tmp_path / "mask.png") as im:
        assert np.array_equal(read_mask(tmp_path / "mask.png"), np.asarray(ImageOps.exif_transpose(im)) > 0)
