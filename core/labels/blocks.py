"""Token-grid labels from pixel masks, boxes and block toggles (paper Eq. 14 and Eq. 15).

Label constants (int64 maps of shape (h_t, w_t), one value per token / block):

* Eq. 14 (fully supervised part: real defects with pixel or block labels, synthetic anomalies,
  normal images): ``POSITIVE = 1`` (anomalous), ``NEGATIVE = 0`` (normal), ``IGNORE = -1`` (the
  paper's empty-set label: between the thresholds, no gradient).
* Eq. 15 (semi-supervised part, boxes): ``NORMAL = 0`` (outside the boxes, the same value as
  NEGATIVE) and ``UNKNOWN = -2``. The paper writes -1 for unknown; we use -2 so a map can never
  confuse "ignored by Eq. 14" with "unknown by Eq. 15", and the Eq. 11 loss refuses UNKNOWN.

Geometry: the token grid covers the whole image (the image is resized, never cropped, before
feature extraction), so token (r, c) of an (h_t, w_t) grid covers the image rectangle
rows [r*H/h_t, (r+1)*H/h_t) x cols [c*W/w_t, (c+1)*W/w_t) in the *original* pixel coordinates.
Fractions are exact area fractions of that rectangle (pixels cut by a block border count with the
part of their area inside), so images whose size is not a multiple of the grid are handled and
masks or boxes can be given at the image's original resolution.

Comparisons are the paper's strict ones, evaluated with a 1e-9 tolerance so that a block exactly at
a threshold (e.g. half of its pixels against eps+ = 50 %) is never flipped by rounding.
A block with no anomalous pixel at all is always NEGATIVE, also when eps- = 0 (BTAD's semi
setting; the literal "< 0 %" would make every block ignored).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from semirest.core.labels.boxes import RotatedBox, boxes_to_mask
from semirest.core.labels.image_labels import blocks_to_mask

POSITIVE = 1
NEGATIVE = 0
IGNORE = -1
NORMAL = 0
UNKNOWN = -2

_TOL = 1e-9


def _area_matrix(n_pixels: int, n_blocks: int) -> np.ndarray:
    """(n_blocks, n_pixels) weights: overlap of block i with pixel p divided by the block length."""
    edges = np.arange(n_blocks + 1, dtype=np.float64) * (n_pixels / n_blocks)
    lo = np.maximum(edges[:-1, None], np.arange(n_pixels)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n_pixels)[None, :] + 1.0)
    return np.clip(hi - lo, 0.0, None) / (n_pixels / n_blocks)


def block_fractions(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Fraction of each token block's area covered by the mask's non-zero pixels (Eq. 14's
    sum / beta). ``mask``: (H, W), any dtype, non-zero = inside. Returns float64 (h_t, w_t) in [0, 1].
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    h_t, w_t = grid
    if h_t < 1 or w_t < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    m = (m != 0).astype(np.float64)
    return _area_matrix(m.shape[0], h_t) @ m @ _area_matrix(m.shape[1], w_t).T


def labels_from_fractions(fractions: np.ndarray, eps_plus: float, eps_minus: float) -> np.ndarray:
    """Eq. 14 on block fractions: > eps+ -> POSITIVE, < eps- (or exactly 0) -> NEGATIVE, else IGNORE."""
    if not 0.0 <= eps_minus <= eps_plus <= 1.0:
        raise ValueError(f"need 0 <= eps_minus <= eps_plus <= 1, got {eps_minus}, {eps_plus}")
    f = np.asarray(fractions, dtype=np.float64)
    labels = np.full(f.shape, IGNORE, dtype=np.int64)
    labels[(f < eps_minus - _TOL) | (f == 0.0)] = NEGATIVE
    labels[f > eps_plus + _TOL] = POSITIVE
    return labels


def block_labels(mask: np.ndarray, grid: tuple[int, int], eps_plus: float, eps_minus: float) -> np.ndarray:
    """Eq. 14: token-grid labels {POSITIVE, NEGATIVE, IGNORE} from a pixel defect mask (H, W)."""
    return labels_from_fractions(block_fractions(mask, grid), eps_plus, eps_minus)


def semi_labels(unknown_mask: np.ndarray, grid: tuple[int, int], v: float = 0.5) -> np.ndarray:
    """Eq. 15: UNKNOWN where more than ``v`` of the block lies in the unknown region, else NORMAL."""
    f = block_fractions(unknown_mask, grid)
    return np.where(f > v + _TOL, UNKNOWN, NORMAL).astype(np.int64)


def semi_labels_from_boxes(boxes: Iterable[RotatedBox], image_hw: tuple[int, int],
                           grid: tuple[int, int], v: float = 0.5) -> np.ndarray:
    """Eq. 15 from rotated boxes (drawn by a person or from :func:`boxes_from_mask`).

    The boxes are in the pixel coordinates of an image of size ``image_hw`` (see
    :mod:`semirest.core.labels.boxes` for the convention); their union, rasterised at pixel centres,
    is the unknown region.
    """
    return semi_labels(boxes_to_mask(list(boxes), image_hw), grid, v)


def block_labels_from_blocks(blocks: Iterable[tuple[int, int]], block_size: int, image_hw: tuple[int, int],
                             grid: tuple[int, int], eps_plus: float, eps_minus: float) -> np.ndarray:
    """Token-grid labels from toggled image blocks (8x8 or 16x16 pixels): the toggled blocks are
    the anomalous pixels, then Eq. 14. When a token covers exactly whole blocks (e.g. 512-px image,
    64x64 grid, 8- or 16-px blocks) every token is POSITIVE or NEGATIVE and the thresholds do not
    matter; otherwise partly toggled tokens follow Eq. 14's thresholds.
    """
    return block_labels(blocks_to_mask(blocks, block_size, image_hw), grid, eps_plus, eps_minus)
