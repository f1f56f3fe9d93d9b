"""Score maps as pictures: OpenCV's JET colour map over a fixed score range, blended over the image."""
from __future__ import annotations

import cv2
import numpy as np


def colorize(score_map: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Score map -> RGB uint8 with OpenCV's JET colour map, scores clipped to [vmin, vmax]."""
    span = max(float(vmax) - float(vmin), 1e-12)
    norm = np.clip((np.asarray(score_map, dtype=np.float32) - vmin) / span, 0.0, 1.0)
    bgr = cv2.applyColorMap((norm * 255.0 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, score_map: np.ndarray, vmin: float, vmax: float, opacity: float = 0.5) -> np.ndarray:
    """Blend the coloured score map over an RGB image of the same size."""
    heat = colorize(score_map, vmin, vmax)
    return cv2.addWeighted(image, 1.0 - opacity, heat, opacity, 0.0)
