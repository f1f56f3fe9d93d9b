"""Label and reference masks rendered to ARGB32 overlay arrays (numpy only, region by region)."""
from __future__ import annotations

import cv2
import numpy as np

from semirest.app.canvas.layers import BLOCK8_ARGB, BLOCK16_ARGB, PIXEL_ARGB, REFERENCE_EDGE_ARGB, REFERENCE_FILL_ARGB

Rect = tuple[int, int, int, int]


def _cells_region(cells: np.ndarray, grid: int, rect: Rect) -> np.ndarray | None:
    x0, y0, x1, y1 = rect
    r0, r1 = y0 // grid, (y1 - 1) // grid + 1
    c0, c1 = x0 // grid, (x1 - 1) // grid + 1
    sub = cells[r0:r1, c0:c1]
    if not sub.any():
        return None
    up = np.repeat(np.repeat(sub, grid, axis=0), grid, axis=1)
    oy, ox = y0 - r0 * grid, x0 - c0 * grid
    return up[oy : oy + (y1 - y0), ox : ox + (x1 - x0)]


def compose_labels(out: np.ndarray, pixels: np.ndarray, cells: dict[int, np.ndarray], rect: Rect | None = None) -> None:
    """Write the label colours of ``rect`` (whole image if None) into ``out`` (H, W) uint32.

    Pixel labels are drawn over 8x8 blocks, which are drawn over 16x16 blocks."""
    h, w = pixels.shape
    x0, y0, x1, y1 = rect if rect is not None else (0, 0, w, h)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    region = out[y0:y1, x0:x1]
    region[...] = 0
    for grid, color in ((16, BLOCK16_ARGB), (8, BLOCK8_ARGB)):
        m = _cells_region(cells[grid], grid, (x0, y0, x1, y1))
        if m is not None:
            region[m] = color
    pix = pixels[y0:y1, x0:x1]
    if pix.any():
        region[pix.astype(bool)] = PIXEL_ARGB


def label_bounds(pixels: np.ndarray, cells: dict[int, np.ndarray]) -> Rect | None:
    """The rectangle holding every label, or None: composing only that part of a fresh (zeroed)
    overlay keeps opening a large, sparsely labelled image fast (the whole 4096x4096 image takes
    ~70 ms, a scan with cv2.boundingRect a few ms)."""
    rects = []
    for grid, m in ((1, pixels), *cells.items()):
        x, y, w, h = cv2.boundingRect(m.view(np.uint8) if m.dtype == bool else m.astype(np.uint8, copy=False))
        if w and h:
            rects.append((x * grid, y * grid, (x + w) * grid, (y + h) * grid))
    if not rects:
        return None
    return min(r[0] for r in rects), min(r[1] for r in rects), max(r[2] for r in rects), max(r[3] for r in rects)


def compose_reference(mask: np.ndarray) -> np.ndarray:
    """A reference mask as a translucent green fill with a bright outline (H, W) uint32."""
    m = mask.astype(np.uint8)
    out = np.zeros(m.shape, dtype=np.uint32)
    out[m > 0] = REFERENCE_FILL_ARGB
    edge = (m > 0) & (cv2.erode(m, np.ones((3, 3), np.uint8)) == 0)
    out[edge] = REFERENCE_EDGE_ARGB
    return out


def heatmap_argb(score_map: np.ndarray, opacity: float, threshold: float, max_side: int = 768) -> np.ndarray:
    """An anomaly map (probabilities in [0, 1]) as a premultiplied ARGB32 overlay (H', W') uint32.

    JET colours on a fixed [0, 1] scale (as ``semirest predict``'s overlays), ``opacity`` where the
    score reaches ``threshold`` and transparent below it. Large maps are reduced to ``max_side``
    pixels on the long side (the canvas stretches the layer over the image), so recolouring after
    a slider move stays a few milliseconds."""
    m = np.asarray(score_map, dtype=np.float32)
    h, w = m.shape
    s = max(h, w)
    if s > max_side:
        m = cv2.resize(m, (max(1, round(w * max_side / s)), max(1, round(h * max_side / s))), interpolation=cv2.INTER_AREA)
    u8 = (np.clip(m, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_JET).astype(np.uint32)
    a = np.where(m >= threshold, int(round(255 * float(np.clip(opacity, 0.0, 1.0)))), 0).astype(np.uint32)
    # premultiplied: channel * a / 255
    b, g, r = (bgr[..., 0] * a) // 255, (bgr[..., 1] * a) // 255, (bgr[..., 2] * a) // 255
    return (a << 24) | (r << 16) | (g << 8) | b
