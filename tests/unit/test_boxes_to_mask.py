import cv2
import numpy as np

from semirest.core.labels.boxes import RotatedBox, boxes_from_mask, boxes_to_mask


def test_axis_aligned_box_is_exact():
    m = boxes_to_mask([RotatedBox(cx=3.0, cy=2.0, width=6.0, height=4.0, angle=0.0)], (8, 16))
    expected = np.zeros((8, 16), dtype=bool)
    expected[0:4, 0:6] = True
    assert np.array_equal(m, expected)


def test_rotated_box_pixel_centres():
    b = RotatedBox(cx=10.0, cy=10.0, width=12.0, height=4.0, angle=30.0)
    m = boxes_to_mask([b], (20, 20))
    rr, cc = np.mgrid[0:20, 0:20]
    x, y = cc + 0.5 - 10.0, rr + 0.5 - 10.0
    t = np.radians(30.0)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    assert np.array_equal(m, (np.abs(u) <= 6.0) & (np.abs(v) <= 2.0))
    # clockwise on screen: the box's +x end points down-right
    assert m[12, 14] and not m[7, 14]


def test_boxes_from_mask_round_trip_covers_region_tightly():
    mask = np.zeros((64, 64), dtype=np.uint8)
    pts = cv2.boxPoints(((30.0, 28.0), (36.0, 10.0), 25.0))
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    boxes = boxes_from_mask(mask)
    assert len(boxes) == 1
    raster = boxes_to_mask(boxes, (64, 64))
    assert raster[mask.astype(bool)].all()               # covers every defect pixel
    assert raster.sum() <= 1.25 * mask.sum()             # and not much more (thin 10-px defect)


def test_box_outside_image_and_clipping():
    assert not boxes_to_mask([RotatedBox(-10.0, -10.0, 4.0, 4.0)], (8, 8)).any()
    m = boxes_to_mask([RotatedBox(0.0, 0.0, 4.0, 4.0)], (8, 8))
    assert m.sum() == 4 and m[:2, :2].all()
