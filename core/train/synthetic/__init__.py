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

from semirest.core.train.synthetic.foreground import (MEMSEG_FOREGROUND, TEXTURE_CATEGORIES, ForegroundRule,
                                                      auto_foreground, foreground_mask, resolve_foreground)
from semirest.core.train.synthetic.generator import SyntheticAnomalies
from semirest.core.train.synthetic.perlin import PerlinField, fractal_noise, perlin_noise, smooth_noise
from semirest.core.train.synthetic.sources import STRUCTURE_OPS, TEXTURES, procedural_texture, shuffle_grid

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
