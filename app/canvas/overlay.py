"""Label and reference masks rendered to ARGB32 overlay arrays (numpy only, region by region)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from semirest.app.canvas.layers import HATCH_PERIOD, HATCH_WIDTH, REFERENCE_EDGE_ARGB, REFERENCE_FILL_ARGB, LabelPalette

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


def _block_lines(grid: int, rect: Rect) -> np.ndarray:
    """Where a cell of ``grid`` draws its bright pattern inside ``rect``: the 1-pixel outline of
    each 8x8 cell, diagonal hatching in 16x16 cells (so the two grids and the brush differ in
    pattern, not only in colour, once colour means the class)."""
    x0, y0, x1, y1 = rect
    ys, xs = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]
    if grid == 8:
        return (ys % grid == 0) | (ys % grid == grid - 1) | (xs % grid == 0) | (xs % grid == grid - 1)
    return (ys + xs) % HATCH_PERIOD < HATCH_WIDTH


def compose_labels(out: np.ndarray, pixels: np.ndarray, cells: dict[int, np.ndarray], rect: Rect | None = None,
                   palette: LabelPalette | None = None) -> None:
    """Write the label colours of ``rect`` (whole image if None) into ``out`` (H, W) uint32.

    ``pixels`` and ``cells`` hold class ids (0: no label); each is drawn in its class's colour
    from ``palette``. Pixel labels are drawn over 8x8 blocks, which are drawn over 16x16 blocks."""
    palette = palette or LabelPalette()
    h, w = pixels.shape
    x0, y0, x1, y1 = rect if rect is not None else (0, 0, w, h)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    region = out[y0:y1, x0:x1]
    region[...] = 0
    for grid in (16, 8):
        m = _cells_region(cells[grid], grid, (x0, y0, x1, y1))
        if m is not None:
            on = m > 0
            drawn = np.where(_block_lines(grid, (x0, y0, x1, y1)), palette.block_line[m], palette.block_fill[m])
            region[on] = drawn[on]
    pix = pixels[y0:y1, x0:x1]
    if pix.any():
        on = pix > 0
        region[on] = palette.pixel[pix[on]]


@dataclass(frozen=True)
class LabelRegion:
    """One connected region of brush pixels or cells of one class (for its class tag)."""

    class_id: int
    kind: str  # "pixel", "block8" or "block16"
    rect: Rect  # bounding box in image pixels
    area: int  # image pixels


def label_regions(pixels: np.ndarray, cells: dict[int, np.ndarray], bounds: Rect | None = None) -> list[LabelRegion]:
    """The connected regions (8-connected) of each class's brush pixels and of each grid's cells,
    largest first. Only ``bounds`` (see :func:`label_bounds`) is scanned; cells are scanned at
    cell resolution."""
    out: list[LabelRegion] = []
    if bounds is not None:
        x0, y0, x1, y1 = bounds
        crop = pixels[y0:y1, x0:x1]
        if crop.size and crop.any():
            present = np.flatnonzero(np.bincount(crop.ravel(), minlength=1))
            for k in present[present > 0]:
                n, _lab, stats, _c = cv2.connectedComponentsWithStats((crop == k).view(np.uint8), connectivity=8)
                for x, y, w, h, area in stats[1:]:
                    out.append(LabelRegion(int(k), "pixel", (x0 + int(x), y0 + int(y), x0 + int(x + w), y0 + int(y + h)), int(area)))
    for grid, m in cells.items():
        if not m.any():
            continue
        present = np.flatnonzero(np.bincount(m.ravel()))
        for k in present[present > 0]:
            n, _lab, stats, _c = cv2.connectedComponentsWithStats((m == k).view(np.uint8), connectivity=8)
            for x, y, w, h, area in stats[1:]:
                rect = (int(x) * grid, int(y) * grid, int(x + w) * grid, int(y + h) * grid)
                out.append(LabelRegion(int(k), f"block{grid}", rect, int(area) * grid * grid))
    out.sort(key=lambda r: -r.area)
    return out


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
