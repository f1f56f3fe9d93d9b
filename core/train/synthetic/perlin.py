"""Perlin noise fields: where a synthetic anomaly goes (MemSeg's thresholded, rotated Perlin mask).

Fields are evaluated at a capped working resolution and resized, which keeps the cost of one
anomaly nearly independent of the image size.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


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
