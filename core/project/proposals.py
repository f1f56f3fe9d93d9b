"""Model-assisted labeling: rotated-box suggestions from a thresholded anomaly map (no Qt).

Each 8-connected region of ``heatmap > threshold`` becomes one minimum-area rotated box
(:func:`~semirest.core.labels.boxes.boxes_from_mask`, the same fit that simulates an inspector's
boxes in the benchmark), in the image's pixel coordinates and the studio's angle convention.
Regions smaller than ``min_area`` pixels are dropped (noise), and at most ``max_boxes`` boxes are
returned, largest regions first.
"""
from __future__ import annotations

import cv2
import numpy as np

from semirest.core.labels.boxes import RotatedBox, boxes_from_mask


def propose_boxes(heatmap: np.ndarray, threshold: float, min_area: int = 16, max_boxes: int = 20) -> list[RotatedBox]:
    m = (np.asarray(heatmap) > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_area]
    keep.sort(key=lambda k: -stats[k, cv2.CC_STAT_AREA])
    out: list[RotatedBox] = []
    for k in keep[:max_boxes]:
        out += boxes_from_mask(labels == k)
    return out
