"""Token targets from rotated boxes and a model's token scores (the semi setting's box method).

ResMixMatch (paper 3.4) guesses the labels inside the boxes with the model it trains; on this
project's data those guesses fall from a mean of about 0.18 to 0.01 within the stage, and the
stage ends as a fine-tune on normal data (docs/experiments/). With correct labels inside the boxes
the same stage reaches block supervision, so this module gives the tokens inside a box their
targets by rank instead of by a sharpened probability:

* outside every box of a labelled image: NEGATIVE (the box covers the whole defect);
* a token touched by a box but with no more than ``inside`` of its area in it: IGNORE (the
  defect's edge may lie in it);
* inside a box, the bounding-box tightness prior as multiple-instance learning (Hsu et al.,
  NeurIPS 2019): every strip across a tight box, along either of its axes, holds at least one
  defect token, so each strip's highest-scoring token is POSITIVE; further tokens scoring at least
  ``positive_ratio`` x the median of those strip winners are POSITIVE too (the share of positives
  set by the box's own scores); the rest IGNORE.

A box therefore never turns all-normal: its best token is always positive. The scores come from a
model that does not move with the one being trained (the un model, then the EMA model at each
refresh: self-training rounds, see :class:`~semirest.core.train.trainer.Trainer`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from semirest.core.labels.blocks import IGNORE, NEGATIVE, POSITIVE, block_fractions
from semirest.core.labels.boxes import RotatedBox, boxes_to_mask


def token_centres(image_hw: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """(h_t, w_t, 2) pixel (x, y) centres of the tokens of a grid covering an image of ``image_hw``."""
    (h, w), (h_t, w_t) = image_hw, grid
    ys = (np.arange(h_t) + 0.5) * (h / h_t)
    xs = (np.arange(w_t) + 0.5) * (w / w_t)
    return np.stack(np.meshgrid(xs, ys), axis=-1)


def box_strips(box: RotatedBox, centres: np.ndarray, token_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Strip indices of every token along the box's x axis and along its y axis (token-sized strips,
    counted from the box's corner), from the token centres in the box's own frame."""
    t = math.radians(box.angle)
    dx, dy = centres[..., 0] - box.cx, centres[..., 1] - box.cy
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return (np.floor((u + box.width / 2.0) / token_px).astype(np.int64),
            np.floor((v + box.height / 2.0) / token_px).astype(np.int64))


def _box_positives(inside: np.ndarray, scores: np.ndarray, strips: tuple[np.ndarray, np.ndarray],
                   positive_ratio: float) -> np.ndarray:
    """Bool map of one box's positive tokens (``inside``: its candidate tokens, at least one)."""
    idx = np.flatnonzero(inside)
    s = scores.reshape(-1)[idx]
    winners = set()
    for strip in strips:
        ids = strip.reshape(-1)[idx]
        for k in np.unique(ids):
            members = np.flatnonzero(ids == k)
            winners.add(int(idx[members[np.argmax(s[members])]]))
    win = np.array(sorted(winners))
    threshold = positive_ratio * float(np.median(scores.reshape(-1)[win]))
    out = np.zeros(scores.size, dtype=bool)
    out[win] = True
    out[idx[s >= threshold]] = True
    return out.reshape(scores.shape)


def box_token_targets(boxes: Sequence[RotatedBox], image_hw: tuple[int, int], grid: tuple[int, int],
                      scores: np.ndarray, inside: float = 0.08, positive_ratio: float = 1.0) -> np.ndarray:
    """(h_t, w_t) int64 targets {POSITIVE, NEGATIVE, IGNORE} of one box-labelled image.

    ``boxes`` in the image's pixel coordinates (size ``image_hw``); ``scores`` (h_t, w_t): a model's
    anomaly scores per token (any monotone scale); ``inside``: the share of a token's area in a box
    above which it is a candidate of that box (the fast preset's Eq. 15 cut, 8 %).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != tuple(grid):
        raise ValueError(f"scores must have the grid's shape {tuple(grid)}, got {scores.shape}")
    if positive_ratio <= 0 or not math.isfinite(positive_ratio):
        raise ValueError(f"positive_ratio must be a positive number, got {positive_ratio}")
    boxes = list(boxes)
    targets = np.full(grid, NEGATIVE, dtype=np.int64)
    if not boxes:
        return targets
    targets[block_fractions(boxes_to_mask(boxes, image_hw), grid) > 0] = IGNORE
    centres = token_centres(image_hw, grid)
    token_px = min(image_hw[0] / grid[0], image_hw[1] / grid[1])
    for box in boxes:
        frac = block_fractions(boxes_to_mask([box], image_hw), grid)
        candidates = frac > inside
        if not candidates.any() and frac.any():  # a box smaller than the cut: its most covered token
            candidates = frac == frac.max()
        if not candidates.any():  # no pixel centre inside (a sliver): the token under its centre
            r = min(max(int(box.cy / image_hw[0] * grid[0]), 0), grid[0] - 1)
            c = min(max(int(box.cx / image_hw[1] * grid[1]), 0), grid[1] - 1)
            candidates[r, c] = True
        targets[_box_positives(candidates, scores, box_strips(box, centres, token_px), positive_ratio)] = POSITIVE
    return targets
