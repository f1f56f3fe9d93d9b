"""Model-assisted labeling: rotated-box suggestions from a thresholded anomaly map (no Qt).

Each 8-connected region of ``heatmap > threshold`` becomes one minimum-area rotated box
(:func:`~semirest.core.labels.boxes.boxes_from_mask`, the same fit that simulates an inspector's
boxes in the benchmark), in the image's pixel coordinates and the studio's angle convention.
Regions smaller than ``min_area`` pixels are dropped (noise). The suggestions are ranked by the
region's peak score, most anomalous first, and only the best ``max_boxes`` are returned: a map
with a low threshold breaks into dozens of regions, and reviewing twenty suggestions costs more
than drawing the two boxes that matter.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from semirest.core.labels.boxes import RotatedBox, boxes_from_mask

DEFAULT_MAX_BOXES = 5


@dataclass(frozen=True)
class Proposal:
    box: RotatedBox
    score: float  # the highest map value inside the region
    area: int  # pixels of the region


def propose_boxes(heatmap: np.ndarray, threshold: float, min_area: int = 16,
                  max_boxes: int = DEFAULT_MAX_BOXES) -> list[Proposal]:
    m = np.asarray(heatmap, dtype=np.float32)
    n, labels, stats, _ = cv2.connectedComponentsWithStats((m > threshold).astype(np.uint8), connectivity=8)
    keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_area]
    if not keep:
        return []
    def region(k: int):  # the region's own bounding rectangle: cheap on a camera-size map
        x, y, w, h = (int(v) for v in stats[k, :4])
        return x, y, labels[y:y + h, x:x + w] == k, m[y:y + h, x:x + w]

    peaks = {}
    for k in keep:
        _, _, inside, values = region(k)
        peaks[k] = float(values[inside].max())
    keep.sort(key=lambda k: (-peaks[k], -stats[k, cv2.CC_STAT_AREA]))
    out: list[Proposal] = []
    for k in keep[:max_boxes]:
        x, y, inside, _ = region(k)
        (box,) = boxes_from_mask(inside)
        box = RotatedBox(box.cx + x, box.cy + y, box.width, box.height, box.angle)
        out.append(Proposal(box, peaks[k], int(stats[k, cv2.CC_STAT_AREA])))
    return out
