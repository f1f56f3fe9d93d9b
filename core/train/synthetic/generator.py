"""The MemSeg generator: a Perlin mask on the foreground, a structure or texture source, blended as
I_aug = (1 - M) I + M ((1 - delta) I + delta S), delta ~ U(0.15, 1).

Everything random comes from the ``np.random.Generator`` passed to :meth:`SyntheticAnomalies.generate`,
so the same seed gives the same image and mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from semirest.core.train.synthetic.foreground import ForegroundSpec, foreground_mask, resolve_foreground
from semirest.core.train.synthetic.perlin import PerlinField, smooth_noise
from semirest.core.train.synthetic.sources import _OP_NAMES, STRUCTURE_OPS, procedural_texture, shuffle_grid


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
