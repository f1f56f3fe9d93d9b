"""MemSeg-style synthetic anomalies, without any downloaded texture set.

SemiREST (paper section 3.3.3) trains on normal images plus synthetic anomalies made the MemSeg way
(algorithm reference section 2, defaults row 20):

* **where**: a Perlin-noise mask (scales 2^a x 2^b, a, b in [0, 6), rotated by an angle in
  [-90, 90] degrees, thresholded at 0.5), restricted to the object's foreground for object
  categories (MemSeg's per-category grey threshold table), resampled when it is empty or smaller
  than 0.5 % of the image;
* **what**: 50 % a *structure* source (the image itself through 3 of 10 colour/geometry ops, cut
  into an 8 x 8 grid and shuffled) and 50 % a *procedural texture* (fractal noise, stripes,
  checkerboards, blobs, scratch lines) standing in for the DTD set we may not download;
* **how strongly**: I_aug = (1 - M) I + M ((1 - delta) I + delta S), delta ~ U(0.15, 1).

Everything random comes from the ``np.random.Generator`` passed to :meth:`SyntheticAnomalies.generate`
so the same seed gives the same image and mask. All steps are vectorised numpy / OpenCV; noise
fields are evaluated at a capped working resolution and resized, which keeps the cost of one
anomaly nearly independent of the image size.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "ForegroundRule",
    "MEMSEG_FOREGROUND",
    "PerlinField",
    "STRUCTURE_OPS",
    "SyntheticAnomalies",
    "TEXTURES",
    "TEXTURE_CATEGORIES",
    "auto_foreground",
    "foreground_mask",
    "fractal_noise",
    "perlin_noise",
    "procedural_texture",
    "resolve_foreground",
    "shuffle_grid",
    "smooth_noise",
]


# --------------------------------------------------------------------------------------------
# Perlin noise
# --------------------------------------------------------------------------------------------


def _fade(t: np.ndarray) -> np.ndarray:
    # Perlin's quintic 6t^5 - 15t^4 + 10t^3: zero first and second derivative at lattice points.
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


class PerlinField:
    """One random 2-D gradient-noise field over an ``shape`` = (H, W) image, evaluable at any
    sampling density.

    Same field as DRAEM's ``rand_perlin_2d_np``: ``res`` = (periods along y, periods along x) over
    the image, random unit gradients on the lattice, quintic fade, scaled by sqrt(2) so values lie
    in about [-1, 1]. Differences: any shape works (no divisibility requirement), and the rotation
    by ``angle`` degrees is applied to the sampling coordinates, whereas DRAEM rotates the finished
    image and leaves empty (zero) corners. Separating the lattice from its evaluation lets callers
    screen a cheap coarse sample before paying for a fine one.
    """

    def __init__(self, shape: tuple[int, int], res: tuple[float, float], rng: np.random.Generator, angle: float = 0.0):
        self.h, self.w = int(shape[0]), int(shape[1])
        self.ky = float(res[0]) / self.h  # lattice units per pixel
        self.kx = float(res[1]) / self.w
        a = math.radians(angle)
        self.c, self.s = math.cos(a), math.sin(a)
        # Lattice extent from the image corners (relative to the image centre).
        cy = np.array([-1, -1, 1, 1]) * self.h / 2.0
        cx = np.array([-1, 1, -1, 1]) * self.w / 2.0
        u = (self.c * cx + self.s * cy) * self.kx
        v = (-self.s * cx + self.c * cy) * self.ky
        self.u0, self.v0 = math.floor(u.min()), math.floor(v.min())
        self.gw = math.floor(u.max()) - self.u0 + 2
        self.gh = math.floor(v.max()) - self.v0 + 2
        theta = rng.uniform(0.0, 2.0 * math.pi, size=self.gh * self.gw)
        self.gx = np.cos(theta).astype(np.float32)
        self.gy = np.sin(theta).astype(np.float32)

    def sample(self, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """The field at the pixel centres of an ``out_shape`` grid spanning the image (float32).

        ``out_shape`` defaults to the image size; a smaller grid is what cv2.resize expects
        (half-pixel-centre alignment), so resizing it up approximates the full-size field.
        """
        oh, ow = (self.h, self.w) if out_shape is None else (int(out_shape[0]), int(out_shape[1]))
        y = ((np.arange(oh, dtype=np.float32) + 0.5) * np.float32(self.h / oh) - np.float32(self.h / 2.0))[:, None]
        x = ((np.arange(ow, dtype=np.float32) + 0.5) * np.float32(self.w / ow) - np.float32(self.w / 2.0))[None, :]
        # Inverse-rotate the sample points into the unrotated field, in lattice units >= 0.
        u = x * np.float32(self.c * self.kx) + (y * np.float32(self.s * self.kx) - np.float32(self.u0))
        v = x * np.float32(-self.s * self.ky) + (y * np.float32(self.c * self.ky) - np.float32(self.v0))
        # floor in float32: subtracting an int32 array would silently promote everything to float64
        fl_u = np.minimum(np.floor(u), np.float32(self.gw - 2))
        fl_v = np.minimum(np.floor(v), np.float32(self.gh - 2))
        fu = u - fl_u
        fv = v - fl_v
        iu = fl_u.astype(np.int32)
        iv = fl_v.astype(np.int32)
        gx, gy = self.gx, self.gy
        i00 = iv * self.gw + iu
        i10 = i00 + 1
        i01 = i00 + self.gw
        i11 = i01 + 1
        fu1 = fu - np.float32(1.0)
        fv1 = fv - np.float32(1.0)
        n00 = gx.take(i00) * fu + gy.take(i00) * fv
        n10 = gx.take(i10) * fu1 + gy.take(i10) * fv
        n01 = gx.take(i01) * fu + gy.take(i01) * fv1
        n11 = gx.take(i11) * fu1 + gy.take(i11) * fv1
        wu = _fade(fu)
        top = n00 + wu * (n10 - n00)
        bottom = n01 + wu * (n11 - n01)
        return np.float32(math.sqrt(2.0)) * (top + _fade(fv) * (bottom - top))

    def working_shape(self, cap: int = 256, samples_per_period: float = 16.0) -> tuple[int, int]:
        """The smallest grid with ``samples_per_period`` samples per noise period (long side at
        most ``cap``, at least 16 or the image size): the field is smooth, so linear interpolation
        from it is indistinguishable from the exact field once thresholded."""
        h, w = self.h, self.w
        density = samples_per_period * max(self.ky, self.kx)  # samples per image pixel
        scale = min(1.0, cap / max(h, w), max(density, 16.0 / max(h, w)))
        return max(2, round(h * scale)), max(2, round(w * scale))

    def render(self, cap: int = 256, samples_per_period: float = 16.0) -> np.ndarray:
        """The field at image size, evaluated on :meth:`working_shape` and resized."""
        return _resize(self.sample(self.working_shape(cap, samples_per_period)), (self.h, self.w))


def perlin_noise(
    shape: tuple[int, int], res: tuple[float, float], rng: np.random.Generator, angle: float = 0.0
) -> np.ndarray:
    """Exact 2-D Perlin noise of ``shape`` (float32), see :class:`PerlinField`."""
    return PerlinField(shape, res, rng, angle).sample()


def smooth_noise(
    shape: tuple[int, int],
    res: tuple[float, float],
    rng: np.random.Generator,
    angle: float = 0.0,
    cap: int = 256,
) -> np.ndarray:
    """Perlin noise of ``shape`` computed only as finely as it needs to be (PerlinField.render):
    coarse noise (1-4 periods, most draws) costs a few thousand evaluations instead of H x W."""
    return PerlinField(shape, res, rng, angle).render(cap)


def fractal_noise(
    shape: tuple[int, int],
    res: tuple[float, float],
    rng: np.random.Generator,
    octaves: int = 4,
    persistence: float = 0.5,
    angle: float = 0.0,
    cap: int = 256,
) -> np.ndarray:
    """Sum of ``octaves`` Perlin fields, each with twice the frequency and ``persistence`` x the
    amplitude of the previous one: cloudy, stain-like structure at several scales."""
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        f = 2.0**k
        out += np.float32(amp) * smooth_noise(shape, (res[0] * f, res[1] * f), rng, angle, cap)
        total += amp
        amp *= persistence
    return out * np.float32(1.0 / total)


def _working_shape(shape: tuple[int, int], cap: int) -> tuple[int, int]:
    h, w = shape
    scale = min(1.0, cap / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize(field_: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if field_.shape[:2] == tuple(shape):
        return field_
    return cv2.resize(field_, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------------
# Foreground masks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForegroundRule:
    """MemSeg's foreground rule: grey > ``threshold`` is the bright part; the object is the bright
    part if ``bright_is_foreground`` (MemSeg's ``bg_reverse``), else the dark part."""

    threshold: int
    bright_is_foreground: bool


# MemSeg's anomaly_mask.json (TooTouch/MemSeg @ 836bd46), algorithm reference section 2.
# None: no foreground restriction (textures and cable, whose background is part of the product).
MEMSEG_FOREGROUND: dict[str, ForegroundRule | None] = {
    "bottle": ForegroundRule(250, False),
    "cable": None,
    "capsule": ForegroundRule(120, False),
    "carpet": None,
    "grid": None,
    "hazelnut": ForegroundRule(50, True),
    "leather": None,
    "metal_nut": ForegroundRule(40, True),
    "pill": ForegroundRule(100, True),
    "screw": ForegroundRule(110, False),
    "tile": None,
    "toothbrush": ForegroundRule(30, True),
    "transistor": ForegroundRule(90, False),
    "wood": None,
    "zipper": ForegroundRule(100, False),
}

# Other categories we know to be texture-like surfaces (anomalies may appear anywhere).
TEXTURE_CATEGORIES = frozenset({"magnetic_tile", "demo"})

ForegroundSpec = str | ForegroundRule | None


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)


def auto_foreground(image: np.ndarray, border_purity: float = 0.9) -> np.ndarray | None:
    """Otsu foreground for a category without a table entry, or None if the image looks like a
    texture.

    The polarity is the one that makes the image border background (objects are photographed
    whole, inside the frame). If the border is not at least ``border_purity`` one class, or the
    "object" covers almost nothing or almost everything, there is no clear object and the whole
    image is allowed (returns None), which is the right answer for textures.
    """
    g = cv2.GaussianBlur(_gray(image), (5, 5), 0)
    t, _ = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bright = g > t
    h, w = bright.shape
    b = max(2, round(0.02 * min(h, w)))
    ring = np.concatenate(
        [bright[:b].ravel(), bright[-b:].ravel(), bright[b:-b, :b].ravel(), bright[b:-b, -b:].ravel()]
    )
    frac = float(ring.mean()) if ring.size else 0.5
    if frac >= border_purity:
        fg = ~bright
    elif frac <= 1.0 - border_purity:
        fg = bright
    else:
        return None
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, k)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, k).astype(bool)
    area = float(fg.mean())
    if area < 0.01 or area > 0.95:
        return None
    return fg


def resolve_foreground(spec: ForegroundSpec) -> ForegroundSpec:
    """Normalise a foreground spec to a ForegroundRule, "auto" or None.

    Category names of the MemSeg table get their rule; known texture categories and "none" get
    None; any other name gets "auto" (logged), so a new object category still has its background
    kept clean and a new texture category degrades to no mask.
    """
    if spec is None or isinstance(spec, ForegroundRule):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"foreground must be a category name, 'auto', None or a ForegroundRule, got {spec!r}")
    name = spec.strip().lower()
    if name == "auto":
        return "auto"
    if name in ("none", ""):
        return None
    if name in MEMSEG_FOREGROUND:
        return MEMSEG_FOREGROUND[name]
    if name in TEXTURE_CATEGORIES:
        return None
    log.info("no foreground rule for category %r: using the automatic (Otsu) foreground", spec)
    return "auto"


def foreground_mask(image: np.ndarray, spec: ForegroundSpec) -> np.ndarray:
    """Boolean (H, W) mask of where synthetic anomalies may go (all True when there is no rule)."""
    rule = resolve_foreground(spec)
    h, w = image.shape[:2]
    if rule is None:
        return np.ones((h, w), bool)
    if rule == "auto":
        fg = auto_foreground(image)
        return np.ones((h, w), bool) if fg is None else fg
    bright = _gray(image) > rule.threshold
    fg = bright if rule.bright_is_foreground else ~bright
    if not fg.any():  # an odd image (e.g. overexposed) must not make anomalies impossible
        return np.ones((h, w), bool)
    return fg


# --------------------------------------------------------------------------------------------
# Structure source: the image through 3 of 10 ops, then an 8 x 8 shuffled grid
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


def _is_gray(image: np.ndarray) -> bool:
    return image.ndim == 2 or (
        np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 1], image[:, :, 2])
    )


@dataclass
class SyntheticAnomalies:
    """MemSeg synthetic anomalies with procedural textures in place of DTD.

    ``foreground``: a category name (MemSeg table, e.g. "screw"; textures and unknown names handled
    by :func:`resolve_foreground`), "auto" (Otsu, border = background, textures -> no mask), None
    (anomalies anywhere) or a :class:`ForegroundRule`.
    """

    foreground: ForegroundSpec = "auto"
    scale_exponents: tuple[int, int] = (0, 6)  # Perlin periods 2^a, a in [lo, hi)
    rotation_range: tuple[float, float] = (-90.0, 90.0)
    threshold: float = 0.5
    min_area_fraction: float = 0.005  # resample masks smaller than this fraction of the image
    max_retries: int = 10  # then fall back to an elliptic blob on the foreground
    transparency_range: tuple[float, float] = (0.15, 1.0)
    texture_probability: float = 0.5  # else the structure source
    grid_size: int = 8
    n_ops: int = 3
    keep_grayscale: bool = True  # grey inputs get grey anomalies: colour would be a trivial cue
    noise_resolution: int = 256  # noise fields are computed at most this large, then resized
    _rule: ForegroundSpec = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._rule = resolve_foreground(self.foreground)
        lo, hi = self.scale_exponents
        if not 0 <= lo < hi:
            raise ValueError(f"scale_exponents must satisfy 0 <= lo < hi, got {self.scale_exponents}")
        t0, t1 = self.transparency_range
        if not 0.0 <= t0 <= t1 <= 1.0:
            raise ValueError(f"transparency_range must lie in [0, 1], got {self.transparency_range}")
        if not 0.0 <= self.texture_probability <= 1.0:
            raise ValueError("texture_probability must lie in [0, 1]")
        if not 1 <= self.n_ops <= len(STRUCTURE_OPS):
            raise ValueError(f"n_ops must be in 1..{len(STRUCTURE_OPS)}")
        if self.grid_size < 1 or self.max_retries < 0:
            raise ValueError("grid_size must be >= 1 and max_retries >= 0")

    # -- masks ---------------------------------------------------------------------------

    def foreground_mask(self, image: np.ndarray) -> np.ndarray:
        """Where anomalies may be placed on this image (bool H x W)."""
        return foreground_mask(image, self._rule)

    def _draw_field(self, shape: tuple[int, int], rng: np.random.Generator) -> PerlinField:
        lo, hi = self.scale_exponents
        sy = 2 ** int(rng.integers(lo, hi))
        sx = 2 ** int(rng.integers(lo, hi))
        return PerlinField(shape, (sy, sx), rng, rng.uniform(*self.rotation_range))

    def perlin_mask(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """One thresholded, rotated Perlin mask (bool H x W), before the foreground restriction."""
        return self._draw_field(shape, rng).render(self.noise_resolution) > self.threshold

    def _fallback_blob(self, fg: np.ndarray, rng: np.random.Generator, min_px: float) -> np.ndarray:
        """An irregular elliptic blob on the foreground with at least ``min_px`` pixels: the
        ``target`` foreground pixels nearest (in a random, noise-perturbed elliptic metric) to a
        random foreground point. Used only after ``max_retries`` failed Perlin draws."""
        h, w = fg.shape
        n_fg = int(np.count_nonzero(fg))
        if n_fg == 0:
            fg = np.ones((h, w), bool)
            n_fg = h * w
        target = int(min(n_fg, max(math.ceil(min_px), rng.uniform(0.006, 0.02) * h * w)))
        idx = np.flatnonzero(fg)
        cy, cx = divmod(int(idx[rng.integers(len(idx))]), w)
        a = math.radians(rng.uniform(0, 180))
        ratio = rng.uniform(0.3, 1.0)
        y = (np.arange(h, dtype=np.float32) - cy)[:, None]
        x = (np.arange(w, dtype=np.float32) - cx)[None, :]
        du = x * np.float32(math.cos(a)) + y * np.float32(math.sin(a))
        dv = (y * np.float32(math.cos(a)) - x * np.float32(math.sin(a))) * np.float32(1.0 / ratio)
        d = (du * du + dv * dv) * (1.0 + 0.6 * smooth_noise((h, w), (4, 4), rng, cap=64))
        d[~fg] = np.inf
        kth = np.partition(d[fg], target - 1)[target - 1]
        return (d <= kth) & fg

    def anomaly_mask(
        self, shape: tuple[int, int], rng: np.random.Generator, fg: np.ndarray | None = None
    ) -> np.ndarray:
        """Perlin mask AND foreground, resampled until it covers at least ``min_area_fraction`` of
        the image (or half the foreground when the object itself is smaller than that).

        With a small foreground (thin objects such as screws) most draws miss it; each draw is
        first screened on a coarse grid (about 1 % of the cost) and only promising ones are
        rendered at full size. The screen is loose (70 % of the required area), so it rejects only
        draws that would fail anyway, up to the coarse grid's sampling error.
        """
        h, w = shape
        if fg is None:
            fg = np.ones((h, w), bool)
        min_px = max(1.0, min(self.min_area_fraction * h * w, 0.5 * float(fg.sum())))
        restricted = not fg.all()
        coarse_fg: dict[tuple[int, int], np.ndarray] = {}
        for _ in range(self.max_retries + 1):
            fieldn = self._draw_field((h, w), rng)
            if restricted:
                cs = fieldn.working_shape(min(64, self.noise_resolution), 4.0)
                if cs not in coarse_fg:  # fraction of each coarse cell that is foreground
                    coarse_fg[cs] = cv2.resize(fg.astype(np.float32), (cs[1], cs[0]), interpolation=cv2.INTER_AREA)
                est = float(coarse_fg[cs][fieldn.sample(cs) > self.threshold].sum()) * (h * w / (cs[0] * cs[1]))
                if est < 0.7 * min_px:
                    continue
            m = fieldn.render(self.noise_resolution) > self.threshold
            m &= fg
            if np.count_nonzero(m) >= min_px:
                return m
        return self._fallback_blob(fg, rng, min_px)

    # -- sources -------------------------------------------------------------------------

    def structure_source(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The image through ``n_ops`` distinct random ops, then grid-shuffled (uint8 RGB)."""
        src = np.ascontiguousarray(image)
        for i in rng.choice(len(_OP_NAMES), size=self.n_ops, replace=False):
            src = STRUCTURE_OPS[_OP_NAMES[int(i)]](src, rng)
        return shuffle_grid(src, self.grid_size, rng)

    def texture_source(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        return procedural_texture(shape, rng, cap=self.noise_resolution)

    # -- main entry ----------------------------------------------------------------------

    def generate(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One synthetic anomaly: (augmented RGB uint8 image, bool mask of the changed region).

        Pixels outside the mask are exactly the input's.
        """
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        fg = self.foreground_mask(image)
        mask = self.anomaly_mask((h, w), rng, fg)
        if rng.random() < self.texture_probability:
            src = self.texture_source((h, w), rng)
        else:
            src = self.structure_source(image, rng)
        if self.keep_grayscale and _is_gray(image):
            src = cv2.cvtColor(cv2.cvtColor(src, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        delta = float(rng.uniform(*self.transparency_range))
        blended = cv2.addWeighted(image, 1.0 - delta, src, delta, 0.0)  # rounded and saturated
        out = image.copy()
        np.copyto(out, blended, where=mask[:, :, None])
        return out, mask
