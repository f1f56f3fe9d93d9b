"""Label and reference masks rendered to ARGB32 overlay arrays (numpy only, region by region)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from semirest.app.canvas.layers import HATCH_PERIOD, HATCH_WIDTH, REFERENCE_EDGE_ARGB, REFERENCE_FILL_ARGB, LabelPalette

Rect = tuple[int, int, int, int]


def _cell_range(grid: int, rect: Rect) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rect
    return y0 // grid, (y1 - 1) // grid + 1, x0 // grid, (x1 - 1) // grid + 1


def _cell_pattern(grid: int) -> np.ndarray:
    """Where inside one cell of ``grid`` the bright colour goes: the 1-pixel outline of an 8x8
    cell, diagonal hatching of a 16x16 cell (so the two grids and the brush differ in pattern,
    not only in colour, once colour means the class). Periodic per cell, so a region is drawn
    cell by cell without per-pixel coordinates."""
    ys, xs = np.arange(grid)[:, None], np.arange(grid)[None, :]
    if grid == 8:
        return (ys == 0) | (ys == grid - 1) | (xs == 0) | (xs == grid - 1)
    return (ys + xs) % HATCH_PERIOD < HATCH_WIDTH


def _classes_in(a: np.ndarray) -> list[int]:
    """The non-zero values (class ids) of a uint8 array."""
    hist = cv2.calcHist([np.ascontiguousarray(a)], [0], None, [256], [0, 256]).ravel()
    return [int(k) for k in np.flatnonzero(hist) if k]


def _nonzero_box(a: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of ``a``'s non-zero entries, or None (cv2.boundingRect: a few ms on 16M)."""
    x, y, w, h = cv2.boundingRect(a.view(np.uint8) if a.dtype == bool else a)
    return (x, y, x + w, y + h) if w and h else None


def _cells_argb(cells: np.ndarray, grid: int, rect: Rect, palette: LabelPalette):
    """The on cells of one grid inside ``rect`` as ARGB32 pixels (0 where off) with the offset of
    that array's top-left corner inside ``rect``, or None if no cell is on. Only the cells'
    bounding box is drawn: building the whole rectangle cost ~100 ms on a 4096x4096 image."""
    x0, y0, x1, y1 = rect
    r0, r1, c0, c1 = _cell_range(grid, rect)
    box = _nonzero_box(cells[r0:r1, c0:c1])
    if box is None:
        return None
    r0, r1, c0, c1 = r0 + box[1], r0 + box[3], c0 + box[0], c0 + box[2]
    sub = cells[r0:r1, c0:c1]
    line, fill = palette.block_line[sub], palette.block_fill[sub]
    up = np.where(_cell_pattern(grid)[None, :, None, :], line[:, None, :, None], fill[:, None, :, None])
    up = up.reshape(sub.shape[0] * grid, sub.shape[1] * grid)
    # crop to rect: the cells' pixel span is [c0 * grid, c1 * grid) x [r0 * grid, r1 * grid)
    px0, py0 = max(x0, c0 * grid), max(y0, r0 * grid)
    px1, py1 = min(x1, c1 * grid), min(y1, r1 * grid)
    return up[py0 - r0 * grid : py1 - r0 * grid, px0 - c0 * grid : px1 - c0 * grid], (px0 - x0, py0 - y0)


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
        got = _cells_argb(cells[grid], grid, (x0, y0, x1, y1), palette)
        if got is not None:
            drawn, (ox, oy) = got
            np.copyto(region[oy : oy + drawn.shape[0], ox : ox + drawn.shape[1]], drawn, where=drawn != 0)
    box = _nonzero_box(pixels[y0:y1, x0:x1])
    if box is not None:
        bx0, by0, bx1, by1 = box
        pix = pixels[y0 + by0 : y0 + by1, x0 + bx0 : x0 + bx1]
        dst = region[by0:by1, bx0:bx1]
        present = _classes_in(pix)
        if len(present) <= 4:  # a masked fill per class: 4 ms each on 8M pixels, the lookup took 30 ms
            for k in present:
                np.copyto(dst, palette.pixel[k], where=pix == k)
        else:
            np.copyto(dst, np.take(palette.pixel, pix), where=pix != 0)


@dataclass(frozen=True)
class LabelRegion:
    """One connected region of brush pixels or cells of one class (for its class tag)."""

    class_id: int
    kind: str  # "pixel", "block8" or "block16"
    rect: Rect  # bounding box in image pixels
    area: int  # image pixels (of the reduced mask, scaled, for a large labelled area)


REGION_SCAN_PX = 1 << 20  # brush regions are found on a mask reduced to about this many pixels


def _components(mask: np.ndarray):
    """(x, y, w, h, area) of each 8-connected component of a bool mask."""
    _n, _lab, stats, _c = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    return stats[1:]


def label_regions(pixels: np.ndarray, cells: dict[int, np.ndarray], bounds: Rect | None = None) -> list[LabelRegion]:
    """The connected regions (8-connected) of each class's brush pixels and of each grid's cells,
    largest first. Only ``bounds`` (see :func:`label_bounds`) is scanned; cells at cell
    resolution. A labelled area over :data:`REGION_SCAN_PX` pixels is scanned at a reduced
    resolution (any labelled pixel marks its reduced pixel), so regions closer than the factor
    count as one: a 4096x4096 image labelled throughout takes tens of ms, not hundreds."""
    out: list[LabelRegion] = []
    if bounds is not None:
        x0, y0, x1, y1 = bounds
        crop = pixels[y0:y1, x0:x1]
        if crop.size and crop.any():
            f = max(1, int(np.ceil(np.sqrt(crop.size / REGION_SCAN_PX))))
            for k in _classes_in(crop):
                m = (crop == k).view(np.uint8)
                if f > 1:
                    size = (-(-m.shape[1] // f), -(-m.shape[0] // f))
                    m = cv2.resize(m, size, interpolation=cv2.INTER_AREA)
                for x, y, w, h, area in _components(m > 0):
                    rect = (x0 + int(x) * f, y0 + int(y) * f, min(x1, x0 + int(x + w) * f), min(y1, y0 + int(y + h) * f))
                    out.append(LabelRegion(k, "pixel", rect, int(area) * f * f))
    for grid, m in cells.items():
        if not m.any():
            continue
        for k in _classes_in(m):
            for x, y, w, h, area in _components(m == k):
                rect = (int(x) * grid, int(y) * grid, int(x + w) * grid, int(y + h) * grid)
                out.append(LabelRegion(k, f"block{grid}", rect, int(area) * grid * grid))
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
