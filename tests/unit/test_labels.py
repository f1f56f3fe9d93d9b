import cv2
import numpy as np
import pytest

from semirest.core.labels.boxes import RotatedBox, boxes_from_mask
from semirest.core.labels.blocks import (IGNORE, NEGATIVE, NORMAL, POSITIVE, UNKNOWN, block_fractions,
                                        block_labels, block_labels_from_blocks, labels_from_fractions,
                                        semi_labels, semi_labels_from_boxes)
from semirest.core.labels.image_labels import blocks_to_mask


def test_constants_distinct():
    assert (POSITIVE, NEGATIVE, IGNORE, NORMAL) == (1, 0, -1, 0)
    assert UNKNOWN not in (POSITIVE, NEGATIVE, IGNORE)


def test_fractions_match_explicit_block_count_when_divisible():
    rng = np.random.default_rng(0)
    mask = rng.random((32, 48)) < 0.3
    f = block_fractions(mask, (4, 6))  # 8x8 blocks
    explicit = mask.reshape(4, 8, 6, 8).sum(axis=(1, 3)) / 64.0
    assert np.allclose(f, explicit, atol=1e-12)


def test_fractions_not_divisible_are_area_fractions():
    # 5 pixels onto 2 blocks of 2.5 px: block 0 = p0, p1, half of p2
    mask = np.array([[0, 0, 1, 1, 0]], dtype=np.uint8)
    f = block_fractions(mask, (1, 2))
    assert np.allclose(f, [[0.5 / 2.5, 1.5 / 2.5]])
    # and it agrees with OpenCV's area interpolation on a random non-divisible case
    rng = np.random.default_rng(1)
    m = (rng.random((37, 53)) < 0.4)
    ref = cv2.resize(m.astype(np.float64), (7, 5), interpolation=cv2.INTER_AREA)
    assert np.allclose(block_fractions(m, (5, 7)), ref, atol=1e-9)


def test_eq14_known_answers():
    # one row of four 4x4 blocks (beta = 16) with 0, 1, 4, 9 anomalous pixels; eps+ 25 %, eps- 8 %
    mask = np.zeros((4, 16), dtype=bool)
    mask[0, 4] = True                  # 1/16 = 6.25 % -> negative (< 8 %)
    mask[:2, 8:10] = True              # 4/16 = 25 %  -> not > 25 % -> ignored
    mask[:3, 12:15] = True             # 9/16 = 56 %  -> positive
    lab = block_labels(mask, (1, 4), eps_plus=0.25, eps_minus=0.08)
    assert lab.tolist() == [[NEGATIVE, NEGATIVE, IGNORE, POSITIVE]]
    assert lab.dtype == np.int64
    # unsupervised setting eps+ = 50 %: 56 % still positive, exactly 50 % is not
    mask2 = np.zeros((4, 4), dtype=bool)
    mask2[:2] = True
    assert block_labels(mask2, (1, 1), 0.5, 0.08).tolist() == [[IGNORE]]


def test_eq14_zero_eps_minus_keeps_clean_blocks_negative():
    f = np.array([[0.0, 0.01, 0.9]])
    assert labels_from_fractions(f, 0.8, 0.0).tolist() == [[NEGATIVE, IGNORE, POSITIVE]]
    with pytest.raises(ValueError):
        labels_from_fractions(f, 0.1, 0.2)


def test_eq15_semi_labels():
    unknown = np.zeros((8, 8), dtype=bool)
    unknown[:4, :3] = True   # block (0,0): 12/16 = 75 % -> unknown
    unknown[4:6, 4:8] = True  # block (1,1): 8/16 = 50 % -> not > 50 % -> normal
    unknown[4:7, 0:3] = True  # block (1,0): 9/16 -> unknown
    assert semi_labels(unknown, (2, 2)).tolist() == [[UNKNOWN, NORMAL], [UNKNOWN, NORMAL]]


def test_eq15_from_boxes_axis_aligned_and_rotated():
    # axis-aligned box covering pixel columns 0..5 and rows 0..3 of a 8x16 image, 4x4 blocks:
    box = RotatedBox(cx=3.0, cy=2.0, width=6.0, height=4.0, angle=0.0)
    lab = semi_labels_from_boxes([box], (8, 16), (2, 4))
    # block (0,0): 16/16 inside; block (0,1): cols 4,5 -> 8/16 = 50 % -> normal
    assert lab.tolist() == [[UNKNOWN, NORMAL, NORMAL, NORMAL], [NORMAL] * 4]
    # a 90 degree rotation of a square box is the same region
    sq = RotatedBox(cx=8.0, cy=4.0, width=8.0, height=8.0, angle=0.0)
    sq90 = RotatedBox(cx=8.0, cy=4.0, width=8.0, height=8.0, angle=90.0)
    assert np.array_equal(semi_labels_from_boxes([sq], (8, 16), (2, 4)),
                          semi_labels_from_boxes([sq90], (8, 16), (2, 4)))
    # union of two boxes: same labels as each box's unknown blocks together
    b2 = RotatedBox(cx=14.0, cy=6.0, width=4.0, height=4.0, angle=0.0)
    both = semi_labels_from_boxes([box, b2], (8, 16), (2, 4))
    assert both[0, 0] == UNKNOWN and both[1, 3] == UNKNOWN and (both == UNKNOWN).sum() == 2


def test_eq15_boxes_from_gt_mask_cover_the_defect():
    mask = np.zeros((64, 64), dtype=np.uint8)
    pts = cv2.boxPoints(((30.0, 30.0), (30.0, 8.0), 30.0))
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    lab = semi_labels_from_boxes(boxes_from_mask(mask), (64, 64), (8, 8))
    defect_blocks = block_labels(mask, (8, 8), 0.5, 0.5) == POSITIVE
    assert (lab[defect_blocks] == UNKNOWN).all()  # every mostly-defective block is unknown
    assert (lab == NORMAL).sum() > 40               # and most of the image stays normal


def test_block_toggles_to_token_labels():
    # 8x8 toggles on a 32x32 image, token grid 4x4 (8 px per token): one-to-one
    blocks = {(0, 1), (3, 3)}
    lab = block_labels_from_blocks(blocks, 8, (32, 32), (4, 4), eps_plus=0.25, eps_minus=0.08)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 1] = expected[3, 3] = POSITIVE
    assert np.array_equal(lab, expected)
    # 16x16 toggles onto the same grid: a toggle covers 2x2 tokens
    lab16 = block_labels_from_blocks({(1, 0)}, 16, (32, 32), (4, 4), 0.25, 0.08)
    assert (lab16 == POSITIVE).sum() == 4 and lab16[2:4, 0:2].tolist() == [[1, 1], [1, 1]]
    # image at twice the resolution: a single 8x8 toggle covers a quarter of a 16-px token -> ignored
    lab_big = block_labels_from_blocks({(0, 0)}, 8, (64, 64), (4, 4), 0.25, 0.08)
    assert lab_big[0, 0] == IGNORE and (lab_big == NEGATIVE).sum() == 15


def test_block_toggles_cut_by_border_and_out_of_range():
    m = blocks_to_mask({(1, 2)}, 8, (12, 20))  # last row/col of blocks are partial
    assert m.sum() == 4 * 4 and m[8:12, 16:20].all()
    # a cell outside the grid (row 2 of a 12-px-high image) covers no pixel
    assert not blocks_to_mask({(2, 0)}, 8, (12, 20)).any()
