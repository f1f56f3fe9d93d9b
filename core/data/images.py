"""Robust image and mask reading.

Everything the rest of the code sees is an RGB ``uint8`` array (H, W, 3) or a boolean mask (H, W),
upright: the EXIF orientation tag of a photo is applied here, once, for every reader.
Odd inputs that a camera or a colleague may produce (grayscale, RGBA, 16-bit, CMYK JPEG, float
TIFF, unicode paths) are converted; files that cannot be decoded raise :class:`ImageReadError`
with the path and the reason, never a bare OpenCV error or ``None``.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from semirest.core.files import write_atomic

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

# OpenCV refuses images above 2**30 pixels by default; we keep the same ceiling explicitly so the
# message is ours. A 20000 x 20000 image (4e8 pixels) is accepted.
MAX_PIXELS = 2**30


class ImageReadError(ValueError):
    """An image or mask file could not be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _read_bytes(path: Path) -> np.ndarray:
    # np.fromfile + imdecode works for unicode and space-containing paths on every platform,
    # where cv2.imread fails silently on some.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageReadError(path, "file is empty")
    return data


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        b = f.read(1)
        while b and b != b"\xff":  # garbage between segments
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or image data before any frame header
            return None
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = int.from_bytes(seg, "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = f.read(5)
            if len(sof) < 5:
                return None
            return int.from_bytes(sof[3:5], "big"), int.from_bytes(sof[1:3], "big")
        f.seek(length - 2, 1)


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding the pixels, or None when the header
    is not understood. PNG, JPEG and BMP are read here; TIFF, WebP and others through Pillow when
    it is installed (it comes with matplotlib)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:8] == b"\x89PNG\r\n\x1a\n":
                return _png_size(head)
            if head[:2] == b"\xff\xd8":
                return _jpeg_size(f)
            if head[:2] == b"BM" and len(head) >= 26:
                return abs(int.from_bytes(head[18:22], "little", signed=True)), abs(int.from_bytes(head[22:26], "little", signed=True))
    except OSError:
        return None
    try:
        import warnings

        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read
            try:
                with Image.open(path) as im:
                    return tuple(im.size)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except Exception:  # noqa: BLE001 - any failure just means "size unknown"
        return None


def check_size(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[int, int] | None:
    """Refuse, before decoding, an image whose header claims more than ``max_pixels`` (a few bytes
    of header must not make the program allocate gigabytes). Returns (width, height) or None."""
    size = image_size(path)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageReadError(
            path, f"image of {size[0]}x{size[1]} pixels is too large (the limit is {max_pixels / 1e6:.0f} megapixels)"
        )
    return size


def _jpeg_truncated(data: np.ndarray) -> bool:
    """A JPEG whose last scan has no end-of-image marker after it was cut short (OpenCV would
    decode it anyway and fill the missing part with grey)."""
    raw = data.tobytes()
    if raw[:2] != b"\xff\xd8":
        return False
    sos = raw.rfind(b"\xff\xda")  # 0xFF 0xDA cannot occur inside entropy-coded data
    return sos < 0 or raw.rfind(b"\xff\xd9") < sos


def exif_orientation(data: np.ndarray | bytes) -> int:
    """The EXIF orientation tag (1-8; 1 when absent or unreadable) of an encoded image."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if b"exif" not in raw[:65536].lower() and raw[:4] not in (b"II*\0", b"MM\0*"):
        return 1  # no EXIF block where JPEG, PNG, WebP and TIFF keep it: skip Pillow
    try:
        import io
        import warnings

        from PIL import Image
    except ImportError:
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read
            try:
                with Image.open(io.BytesIO(raw)) as im:
                    value = im.getexif().get(0x0112, 1)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except Exception:  # noqa: BLE001 - an unreadable EXIF block means "as stored"
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image (pixels as stored) into the upright image the EXIF tag describes, as
    browsers, Pillow's ``ImageOps.exif_transpose`` and ultralytics show it."""
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = img.swapaxes(0, 1)
    elif orientation == 6:
        img = np.rot90(img, -1)
    elif orientation == 7:
        img = img[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        img = np.rot90(img, 1)
    return np.ascontiguousarray(img)


def _decode(path: Path, flags: int) -> np.ndarray:
    """Decode with the EXIF orientation applied: the one place every image and mask is turned
    upright, so labels sit where other tools show the image."""
    data = _read_bytes(path)
    check_size(path)
    if _jpeg_truncated(data):
        raise ImageReadError(path, "truncated JPEG: the file ends before the image data does (incomplete copy or download?)")
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as exc:  # raised e.g. for images above OpenCV's pixel limit
        raise ImageReadError(path, f"cannot be decoded ({str(exc).strip().splitlines()[-1]})") from None
    if img is None or img.size == 0:
        raise ImageReadError(path, "not a readable image (corrupt, truncated or not an image format)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageReadError(path, f"image of {img.shape[1]}x{img.shape[0]} pixels is too large")
    return apply_orientation(img, exif_orientation(data))


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale any integer or float image to uint8 without clipping its range.

    16-bit images are divided by 257 (full 16-bit range to full 8-bit range). Float images in
    [0, 1] are scaled by 255; other float ranges are min-max normalised.
    """
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        finite = np.nan_to_num(img.astype(np.float32))
        lo, hi = float(finite.min()), float(finite.max())
        if lo >= 0.0 and hi <= 1.0:
            return (finite * 255.0 + 0.5).astype(np.uint8)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return ((finite - lo) * scale + 0.5).astype(np.uint8)
    info = np.iinfo(img.dtype)
    lo = max(info.min, int(img.min()))
    hi = int(img.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return ((img.astype(np.float64) - lo) * scale + 0.5).astype(np.uint8)


def resize_batch(images, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 images of any sizes -> one (N, h, w, 3) uint8 batch at ``size`` (area averaging
    when shrinking, bilinear when growing): the model input of training, prediction and the
    exported detector alike."""
    h, w = size
    batch = np.empty((len(images), h, w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if img.shape[:2] == (h, w):
            batch[i] = img
        else:
            shrink = img.shape[0] > h or img.shape[1] > w
            batch[i] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return batch


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any supported image as RGB uint8 (H, W, 3)."""
    path = Path(path)
    img = _decode(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)  # orientation: _decode
    img = to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        # Alpha is dropped, not composited: inspection images with alpha are usually exports
        # whose colour channels are the real content.
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    raise ImageReadError(path, f"unsupported number of channels: {channels}")


def read_mask(path: str | os.PathLike, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a defect mask as a boolean (H, W) array: any non-zero pixel is a defect pixel.

    If ``expected_hw`` is given, a mask of another size is refused: silently resizing a mask
    would shift labels and inflate or hide defects.
    """
    path = Path(path)
    img = _decode(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img.ndim == 3:
        img = img[:, :, :3].max(axis=2) if img.shape[2] >= 3 else img[:, :, 0]
    mask = img > 0
    if expected_hw is not None and tuple(mask.shape) != tuple(expected_hw):
        raise ImageReadError(
            path,
            f"mask is {mask.shape[1]}x{mask.shape[0]} pixels but its image is "
            f"{expected_hw[1]}x{expected_hw[0]}",
        )
    return mask


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write an RGB (or gray / bool) image as PNG, checked and atomically, to any (unicode) path."""
    path = Path(path)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"could not encode PNG for {path}")

    write_atomic(path, buf.tobytes())
