"""What an anomaly is made of: a *structure* source (the image itself through 3 of 10 colour /
geometry ops, cut into an 8 x 8 grid and shuffled) or a *procedural texture* (fractal noise,
stripes, checkerboards, blobs, scratch lines) standing in for the DTD set we may not download.
"""
from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from semirest.core.train.synthetic.perlin import _resize, _working_shape, fractal_noise, perlin_noise, smooth_noise


def _lut(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a (256,) or (256, 3) lookup table to an RGB uint8 image."""
    table = np.clip(np.rint(table), 0, 255).astype(np.uint8)
    if table.ndim == 1:
        return cv2.LUT(img, table)
    return cv2.LUT(img, table.reshape(256, 1, 3))


_RAMP = np.arange(256, dtype=np.float32)


def _op_gamma(img, rng):
    # imgaug GammaContrast((0.5, 2.0), per_channel=True)
    g = rng.uniform(0.5, 2.0, size=3).astype(np.float32)
    return _lut(img, 255.0 * (_RAMP[:, None] / 255.0) ** g[None, :])


def _op_brightness(img, rng):
    # imgaug MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30))
    mul, add = rng.uniform(0.8, 1.2), rng.uniform(-30, 30)
    return _lut(img, _RAMP * mul + add)


def _op_sharpness(img, rng):
    # imgaug Sharpen: blend of identity and [[-1]*3, [-1, 8 + L, -1], [-1]*3] with alpha
    alpha, light = rng.uniform(0.3, 1.0), rng.uniform(0.75, 1.5)
    k = np.full((3, 3), -alpha, np.float32)
    k[1, 1] = (1.0 - alpha) + alpha * (8.0 + light)
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)


def _op_hue_saturation(img, rng):
    # imgaug AddToHueAndSaturation((-50, 50), per_channel=True)
    dh, ds = rng.integers(-50, 51, size=2)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    hue_lut = ((np.arange(256) + dh) % 256).astype(np.uint8)
    sat_lut = np.clip(np.arange(256) + ds, 0, 255).astype(np.uint8)
    hsv[:, :, 0] = cv2.LUT(hsv[:, :, 0], hue_lut)
    hsv[:, :, 1] = cv2.LUT(hsv[:, :, 1], sat_lut)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def _op_solarize(img, rng):
    # imgaug Solarize(threshold=(32, 128)); always applied (MemSeg's p=0.5 makes it a no-op half
    # the time, which only wastes one of the three ops).
    t = rng.uniform(32, 128)
    return _lut(img, np.where(_RAMP >= t, 255.0 - _RAMP, _RAMP))


def _op_posterize(img, rng):
    bits = int(rng.integers(1, 5))
    mask = (0xFF << (8 - bits)) & 0xFF
    return np.bitwise_and(img, np.uint8(mask))


def _op_invert(img, rng):
    return 255 - img


def _op_autocontrast(img, rng):
    # PIL ImageOps.autocontrast per channel with a random cutoff (imgaug pillike.Autocontrast)
    cutoff = rng.uniform(0.0, 0.1)
    tables = []
    n = img.shape[0] * img.shape[1]
    for ch in range(3):
        hist = np.bincount(img[:, :, ch].ravel(), minlength=256)
        cdf = np.cumsum(hist)
        lo = int(np.searchsorted(cdf, cutoff * n, side="right"))
        hi = int(np.searchsorted(cdf, (1.0 - cutoff) * n, side="left"))
        hi = min(hi, 255)
        if hi <= lo:
            tables.append(_RAMP)
        else:
            tables.append((_RAMP - lo) * (255.0 / (hi - lo)))
    return _lut(img, np.stack(tables, axis=1))


def _op_equalize(img, rng):
    return cv2.merge([cv2.equalizeHist(np.ascontiguousarray(img[:, :, c])) for c in range(3)])


def _op_rotate(img, rng):
    # imgaug Affine(rotate=(-45, 45)), but with reflected borders: black corners would give the
    # network an easy, unrealistic cue.
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), rng.uniform(-45, 45), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


STRUCTURE_OPS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "gamma": _op_gamma,
    "brightness": _op_brightness,
    "sharpness": _op_sharpness,
    "hue_saturation": _op_hue_saturation,
    "solarize": _op_solarize,
    "posterize": _op_posterize,
    "invert": _op_invert,
    "autocontrast": _op_autocontrast,
    "equalize": _op_equalize,
    "rotate": _op_rotate,
}
_OP_NAMES = tuple(STRUCTURE_OPS)


def shuffle_grid(img: np.ndarray, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Cut the image into grid x grid cells and shuffle them (MemSeg's structure anomaly).

    Sizes that are not a multiple of ``grid`` are padded by reflection and cropped back.
    """
    h, w = img.shape[:2]
    ch, cw = -(-h // grid), -(-w // grid)
    ph, pw = ch * grid - h, cw * grid - w
    x = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REFLECT_101) if (ph or pw) else img
    c = x.shape[2]
    cells = x.reshape(grid, ch, grid, cw, c).transpose(0, 2, 1, 3, 4).reshape(grid * grid, ch, cw, c)
    cells = cells[rng.permutation(grid * grid)]
    out = cells.reshape(grid, grid, ch, cw, c).transpose(0, 2, 1, 3, 4).reshape(grid * ch, grid * cw, c)
    return np.ascontiguousarray(out[:h, :w])


# --------------------------------------------------------------------------------------------
# Procedural textures (DTD replacement)
# --------------------------------------------------------------------------------------------


def _random_tones(rng: np.random.Generator, n: int, tint: bool) -> np.ndarray:
    """n RGB colours (n, 3) float32 whose grey levels span at least 90 levels, so that a texture
    has visible grey-level structure even after conversion to grey."""
    lo = rng.uniform(0, 165)
    hi = rng.uniform(lo + 90, 255)
    lum = np.concatenate([[lo, hi], rng.uniform(lo, hi, size=n - 2)])
    lum = rng.permutation(lum)
    cols = np.repeat(lum[:, None], 3, axis=1)
    if tint:
        cols = cols + rng.uniform(-60, 60, size=(n, 3))
    return np.clip(cols, 0, 255).astype(np.float32)


def _colourise(t: np.ndarray, tones: np.ndarray) -> np.ndarray:
    """Map a field t in [0, 1] (H, W) to an RGB uint8 image by piecewise-linear interpolation of
    ``tones`` (a 256-entry lookup table: much faster than per-pixel gathers)."""
    table = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(tones)), tones[:, c]) for c in range(3)], 1)
    t8 = (np.clip(t, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    return _lut(cv2.merge([t8, t8, t8]), table)


def _normalise(f: np.ndarray) -> np.ndarray:
    lo, hi = float(f.min()), float(f.max())
    return (f - lo) * np.float32(1.0 / (hi - lo)) if hi > lo else np.zeros_like(f)


def _rotated_coords(shape, rng):
    """Image coordinates rotated by a random angle and shifted to be >= 0."""
    h, w = shape
    a = rng.uniform(0, math.pi)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    c, s = math.cos(a), math.sin(a)
    u, v = c * x + s * y, -s * x + c * y
    return u - u.min(), v - v.min()


def _tex_fractal(shape, rng, cap, tint):
    # cloudy stains / corrosion: smooth, so computed at the working size and resized
    ws = _working_shape(shape, min(cap, 160))
    r = float(2 ** rng.integers(1, 4))
    f = fractal_noise(ws, (r, r * rng.uniform(0.5, 2.0)), rng, octaves=4, persistence=rng.uniform(0.4, 0.7), cap=cap)
    return _resize(_colourise(_normalise(f), _random_tones(rng, int(rng.integers(2, 5)), tint)), shape)


def _tex_stripes(shape, rng, cap, tint):
    # machining marks, fibres, wrong surface finish: (optionally hard) bands warped by noise
    u, _ = _rotated_coords(shape, rng)
    period = rng.uniform(4, max(6.0, min(shape) / 6))
    warp = smooth_noise(shape, (2, 2), rng, cap=cap)
    s = np.sin((u + warp * np.float32(rng.uniform(0, 2) * period)) * np.float32(2 * math.pi / period))
    if rng.random() < 0.5:  # hard-edged bands
        s = (s > 0).astype(np.float32)
    else:
        s = s * np.float32(0.5) + np.float32(0.5)
    return _colourise(s, _random_tones(rng, 2, tint))


def _tex_checker(shape, rng, cap, tint):
    # regular foreign patterns (mesh, fabric, printed matter)
    u, v = _rotated_coords(shape, rng)
    inv = np.float32(1.0 / rng.uniform(4, max(6.0, min(shape) / 5)))
    t = (((u * inv).astype(np.int32) + (v * inv).astype(np.int32)) & 1).astype(np.float32)
    return _colourise(t, _random_tones(rng, 2, tint))


def _tex_blobs(shape, rng, cap, tint):
    # patches of a few flat grey levels with hard edges: inclusions, paint, missing coating
    ws = _working_shape(shape, cap)
    r = float(2 ** rng.integers(2, 5))
    f = _normalise(fractal_noise(ws, (r, r), rng, octaves=2, cap=cap))
    levels = int(rng.integers(2, 5))
    q = np.floor(f * np.float32(levels * 0.999)) * np.float32(1.0 / max(1, levels - 1))
    return _resize(_colourise(q, _random_tones(rng, levels, tint)), shape)


def _tex_lines(shape, rng, cap, tint):
    # scratches: many thin bright or dark strokes of similar direction on a mottled base
    h, w = shape
    tones = _random_tones(rng, 3, tint)
    tones = tones[np.argsort(tones.mean(axis=1))]
    if rng.random() < 0.5:  # dark strokes on a bright base, else bright on dark
        tones = tones[::-1]
    ws = _working_shape(shape, min(cap, 64))
    base = _colourise(_normalise(perlin_noise(ws, (4, 4), rng)) * np.float32(0.3), tones[:2])
    canvas = np.ascontiguousarray(_resize(base, shape))
    n = int(rng.integers(8, 40))
    main_angle = rng.uniform(0, math.pi)
    scale = max(h, w)
    for _ in range(n):
        a = main_angle + rng.normal(0, 0.3)
        length = rng.uniform(0.1, 0.8) * scale
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        dx, dy = math.cos(a) * length / 2, math.sin(a) * length / 2
        col = np.clip(tones[2] + rng.uniform(-20, 20, size=3), 0, 255)
        cv2.line(
            canvas,
            (int(cx - dx), int(cy - dy)),
            (int(cx + dx), int(cy + dy)),
            tuple(float(c) for c in col),
            thickness=int(rng.integers(1, 4)),
            lineType=cv2.LINE_AA,
        )
    return canvas


TEXTURES: dict[str, Callable] = {
    "fractal": _tex_fractal,
    "stripes": _tex_stripes,
    "checker": _tex_checker,
    "blobs": _tex_blobs,
    "lines": _tex_lines,
}
_TEXTURE_NAMES = tuple(TEXTURES)


def procedural_texture(
    shape: tuple[int, int], rng: np.random.Generator, kind: str | None = None, cap: int = 256, tint: bool = True
) -> np.ndarray:
    """A random procedural texture (H, W, 3) uint8; ``kind`` one of TEXTURES or None for random."""
    if kind is None:
        kind = _TEXTURE_NAMES[int(rng.integers(len(_TEXTURE_NAMES)))]
    tex = TEXTURES[kind](tuple(shape), rng, cap, tint)
    if rng.random() < 0.5:  # fine grain: real materials are never perfectly smooth
        amp = int(rng.integers(4, 16))
        grain = rng.integers(-amp, amp + 1, size=tex.shape[:2], dtype=np.int16)
        tex = np.clip(tex.astype(np.int16) + grain[..., None], 0, 255).astype(np.uint8)
    return tex
