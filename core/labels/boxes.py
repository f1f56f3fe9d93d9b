"""Rotated bounding boxes: the inspector's cheapest label (paper section 3.1).

Convention, shared by the studio, the exports and the trainer:

* pixel coordinates with the origin at the top-left corner of the top-left pixel, x to the right,
  y downwards (so the centre of pixel (row r, column c) is at (c + 0.5, r + 0.5));
* ``cx, cy``: box centre; ``width``: extent along the box's own x axis; ``height``: along its y axis;
* ``angle``: degrees, the rotation of the box's x axis from the image x axis, **clockwise on
  screen** (because y points down), normalised to [-90, 90).

This is the convention of OpenCV's ``RotatedRect`` and of Qt's ``QGraphicsItem.setRotation``, so
neither needs a conversion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import Polygon


def _normalise_angle(angle: float) -> float:
    a = math.fmod(angle + 90.0, 180.0)
    if a < 0:
        a += 180.0
    return a - 90.0


@dataclass(frozen=True)
class RotatedBox:
    cx: float
    cy: float
    width: float
    height: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        if not (self.width >= 0 and self.height >= 0):
            raise ValueError(f"box size must be non-negative, got {self.width} x {self.height}")
        object.__setattr__(self, "angle", _normalise_angle(float(self.angle)))

    def corners(self) -> np.ndarray:
        """The four corners (4, 2) as (x, y), clockwise on screen starting at the box's top-left."""
        t = math.radians(self.angle)
        ux = np.array([math.cos(t), math.sin(t)])  # box x axis in image coordinates
        uy = np.array([-math.sin(t), math.cos(t)])  # box y axis
        hw, hh = self.width / 2.0, self.height / 2.0
        c = np.array([self.cx, self.cy])
        return np.stack([c - hw * ux - hh * uy, c + hw * ux - hh * uy, c + hw * ux + hh * uy, c - hw * ux + hh * uy])

    def polygon(self) -> Polygon:
        return Polygon(self.corners())

    def to_mask(self, hw: tuple[int, int]) -> np.ndarray:
        """Pixels whose centre lies inside the box (bool, shape ``hw``)."""
        return boxes_to_mask([self], hw)

    def canonical(self) -> "RotatedBox":
        """The same rectangle with its angle in [-45, 45) (width and height swapped if needed)."""
        w, h, a = self.width, self.height, self.angle
        if a >= 45.0:
            w, h, a = h, w, a - 90.0
        elif a < -45.0:
            w, h, a = h, w, a + 90.0
        return RotatedBox(self.cx, self.cy, w, h, a)

    @classmethod
    def from_cv(cls, rect: tuple[tuple[float, float], tuple[float, float], float]) -> "RotatedBox":
        """From OpenCV's ((cx, cy), (w, h), angle), in canonical form."""
        (cx, cy), (w, h), a = rect
        return cls(float(cx), float(cy), float(w), float(h), float(a)).canonical()


def boxes_to_mask(boxes: list[RotatedBox], hw: tuple[int, int]) -> np.ndarray:
    """Union of the boxes rasterised at pixel centres (bool, shape ``hw``).

    A pixel is inside when its centre (c + 0.5, r + 0.5) lies inside the rectangle, borders
    included, tested exactly in the box's own frame. (``cv2.fillPoly`` was used before; it also
    fills the pixels its outline passes through and so grew every pixel-aligned box by one pixel at
    the right and bottom.)
    """
    h, w = hw
    mask = np.zeros((h, w), dtype=bool)
    tol = 1e-9
    for b in boxes:
        corners = b.corners()
        # pixels whose centre can lie inside the box's axis-aligned bounding rectangle
        c0 = max(int(math.floor(corners[:, 0].min() - 0.5)), 0)
        c1 = min(int(math.ceil(corners[:, 0].max() - 0.5)), w - 1)
        r0 = max(int(math.floor(corners[:, 1].min() - 0.5)), 0)
        r1 = min(int(math.ceil(corners[:, 1].max() - 0.5)), h - 1)
        if c0 > c1 or r0 > r1:
            continue
        dx = (np.arange(c0, c1 + 1) + 0.5 - b.cx)[None, :]
        dy = (np.arange(r0, r1 + 1) + 0.5 - b.cy)[:, None]
        t = math.radians(b.angle)
        u = dx * math.cos(t) + dy * math.sin(t)  # along the box's x axis
        v = -dx * math.sin(t) + dy * math.cos(t)  # along the box's y axis
        inside = (np.abs(u) <= b.width / 2.0 + tol) & (np.abs(v) <= b.height / 2.0 + tol)
        mask[r0:r1 + 1, c0:c1 + 1] |= inside
    return mask


def boxes_from_mask(mask: np.ndarray) -> list[RotatedBox]:
    """One minimum-area rotated rectangle per 8-connected defect region.

    This simulates an inspector drawing tight rotated boxes around each defect (paper 4.1).
    The rectangle is fitted to the outer pixel corners, so it covers every pixel of its region.
    """
    m = np.asarray(mask).astype(np.uint8)
    n, labels = cv2.connectedComponents(m, connectivity=8)
    boxes = []
    for k in range(1, n):
        ys, xs = np.nonzero(labels == k)
        # all four corners of every pixel of the region
        pts = np.concatenate(
            [np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)]
        ).astype(np.float32)
        hull = cv2.convexHull(pts)
        boxes.append(RotatedBox.from_cv(cv2.minAreaRect(hull)))
    return boxes
