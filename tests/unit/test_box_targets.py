"""Known answers for the box method's target rule (core/train/box_targets.py)."""
from __future__ import annotations

import numpy as np
import pytest

from semirest.core.labels.blocks import IGNORE, NEGATIVE, POSITIVE
from semirest.core.labels.boxes import RotatedBox
from semirest.core.train.box_targets import box_strips, box_token_targets, token_centres

GRID = (8, 8)
HW = (64, 64)  # 8-px tokens


def test_token_centres_are_pixel_centres_of_the_grid_cells():
    c = token_centres((64, 32), (8, 4))
    assert c.shape == (8, 4, 2)
    assert tuple(c[0, 0]) == (4.0, 4.0) and tuple(c[7, 3]) == (28.0, 60.0)


def test_strips_follow_the_box_axes():
    centres = token_centres(HW, GRID)
    box = RotatedBox(32.0, 32.0, 32.0, 16.0, 0.0)  # tokens 2..5 across, 3..4 down
    u, v = box_strips(box, centres, 8.0)
    assert list(u[3, 2:6]) == [0, 1, 2, 3] and list(v[3:5, 3]) == [0, 1]


def test_a_tight_box_around_a_known_defect_gives_the_defect_positive_and_the_rest_normal():
    # a horizontal defect 3 tokens long in row 3 (cols 2-4), its tight box one token high
    scores = np.full(GRID, 0.1)
    scores[3, 2:5] = [0.9, 0.8, 0.95]
    box = RotatedBox(28.0, 28.0, 24.0, 8.0, 0.0)
    t = box_token_targets([box], HW, GRID, scores)
    expected = np.full(GRID, NEGATIVE)
    expected[3, 2:5] = POSITIVE
    assert np.array_equal(t, expected)


def test_low_scoring_tokens_inside_a_box_are_ignored_not_normal():
    # a 4 x 4-token box with the defect on its diagonal: each row / column's winner is positive,
    # the rest of the box gives no gradient, everything outside is normal
    scores = np.full(GRID, 0.05)
    for k in range(4):
        scores[2 + k, 2 + k] = 0.9
    scores[2, 3] = 0.3
    box = RotatedBox(32.0, 32.0, 32.0, 32.0, 0.0)
    t = box_token_targets([box], HW, GRID, scores)
    inside = np.zeros(GRID, bool)
    inside[2:6, 2:6] = True
    assert (t[~inside] == NEGATIVE).all()
    assert set(zip(*np.nonzero(t == POSITIVE))) == {(2 + k, 2 + k) for k in range(4)}
    assert (t[inside & (t != POSITIVE)] == IGNORE).all()


def test_a_lower_ratio_makes_more_positives():
    rng = np.random.default_rng(0)
    scores = rng.random(GRID)
    box = RotatedBox(32.0, 32.0, 40.0, 40.0, 20.0)
    n = [int((box_token_targets([box], HW, GRID, scores, positive_ratio=r) == POSITIVE).sum()) for r in (1.5, 1.0, 0.5)]
    assert n[0] <= n[1] <= n[2] and n[0] < n[2]


def test_a_box_never_turns_all_normal():
    # all-zero scores, tiny and sliver boxes: each box still holds a positive token
    scores = np.zeros(GRID)
    for box in [RotatedBox(12.0, 12.0, 2.0, 2.0, 0.0), RotatedBox(40.3, 40.3, 0.1, 0.1, 30.0),
                RotatedBox(50.0, 20.0, 30.0, 6.0, 45.0)]:
        t = box_token_targets([box], HW, GRID, scores)
        assert (t == POSITIVE).sum() >= 1, box


def test_a_token_barely_touched_by_a_box_is_ignored():
    scores = np.zeros(GRID)
    box = RotatedBox(21.0, 20.0, 10.0, 8.0, 0.0)  # all of token (2, 2), a quarter of token (2, 3)
    t = box_token_targets([box], HW, GRID, scores, inside=0.3)
    assert t[2, 2] == POSITIVE and t[2, 3] == IGNORE
    assert (np.delete(t.reshape(-1), [2 * 8 + 2, 2 * 8 + 3]) == NEGATIVE).all()


def test_no_boxes_means_all_normal_and_bad_input_is_refused():
    assert (box_token_targets([], HW, GRID, np.zeros(GRID)) == NEGATIVE).all()
    with pytest.raises(ValueError, match="grid"):
        box_token_targets([], HW, GRID, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="positive_ratio"):
        box_token_targets([], HW, GRID, np.zeros(GRID), positive_ratio=float("nan"))
