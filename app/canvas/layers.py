"""The canvas layers, bottom to top: image, reference, labels, grid, boxes, heatmap, class tags,
box proposals, brush cursor.

Images and masks are drawn from numpy-backed QImages, and each paint draws only the exposed
rectangle, so a brush dab on a 4096x4096 image repaints a few hundred pixels, not the image.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QImage, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPolygonItem, QGraphicsSimpleTextItem, QStyleOptionGraphicsItem

from semirest.core.labels.boxes import RotatedBox
from semirest.core.labels.classes import PALETTE

Z_IMAGE, Z_REFERENCE, Z_LABELS, Z_GRID, Z_BOXES, Z_HEATMAP, Z_TAGS, Z_PROPOSALS, Z_CURSOR = 0, 10, 20, 25, 30, 40, 42, 45, 50


def argb(r: int, g: int, b: int, a: int) -> int:
    """A premultiplied ARGB32 pixel value."""
    return (a << 24) | ((r * a // 255) << 16) | ((g * a // 255) << 8) | (b * a // 255)


# Labels take their class's hue; the type shows in the pattern: brush pixels a solid fill, 8x8
# cells a faint fill with a bright 1-pixel outline per cell, 16x16 cells a faint fill with bright
# diagonal hatching. Reference green; boxes (and labels of an unknown class) in the class colours.
PIXEL_ALPHA, BLOCK_FILL_ALPHA, BLOCK_LINE_ALPHA = 150, 70, 220
HATCH_PERIOD, HATCH_WIDTH = 8, 2  # 16x16 cells: a 2-pixel line every 8 pixels along x + y (periodic per cell)
REFERENCE_FILL_ARGB = argb(40, 230, 90, 70)
REFERENCE_EDGE_ARGB = argb(60, 255, 110, 230)
BOX_COLOR = QColor(0, 220, 255)
BOX_SELECTED_COLOR = QColor(255, 235, 0)
PROPOSAL_COLOR = QColor(255, 80, 200)  # suggested boxes: dashed magenta, apart from the labels' cyan


class LabelPalette:
    """ARGB32 lookup tables indexed by class id (0-255): what each label type is drawn with.

    ``pixel`` is the brush fill, ``block_fill`` the inside of a cell, ``block_line`` its outline or
    hatching; id 0 (no label) is transparent. Ids without a colour get the class palette's colour
    in id order (as new classes are coloured)."""

    def __init__(self, colours: dict[int, str] | None = None):
        colours = colours or {}
        self.pixel = np.zeros(256, np.uint32)
        self.block_fill = np.zeros(256, np.uint32)
        self.block_line = np.zeros(256, np.uint32)
        for k in range(1, 256):
            c = QColor(colours.get(k, PALETTE[(k - 1) % len(PALETTE)]))
            r, g, b = c.red(), c.green(), c.blue()
            self.pixel[k] = argb(r, g, b, PIXEL_ALPHA)
            self.block_fill[k] = argb(r, g, b, BLOCK_FILL_ALPHA)
            self.block_line[k] = argb(r, g, b, BLOCK_LINE_ALPHA)


class ClassTagItem(QGraphicsItem):
    """A class name on the canvas: a small label in the class's colour whose bottom-left corner
    sits on an image point, in screen pixels (it keeps its size at any zoom).

    ``region_px`` is the size (long side, image pixels) of what it names; the view hides the tag
    while that is smaller than :data:`MIN_SCREEN_PX` on screen, where it would cover the label."""

    MIN_SCREEN_PX = 14.0
    PAD_X, PAD_Y = 3, 1

    def __init__(self, name: str, colour: QColor, region_px: float = 0.0, class_id: int | None = None, kind: str = "box"):
        super().__init__()
        self.class_id = class_id
        self.kind = kind  # "box", "pixel", "block8" or "block16"
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setZValue(Z_TAGS)
        self.region_px = region_px
        self.font = QFont()
        self.font.setPixelSize(11)
        self.font.setBold(True)
        self.name = ""
        self.colour = QColor()
        self.set_class(name, colour)

    def set_class(self, name: str, colour: QColor) -> None:
        if name == self.name and colour == self.colour:
            return
        self.prepareGeometryChange()
        self.name, self.colour = name, QColor(colour)
        fm = QFontMetrics(self.font)
        w = fm.horizontalAdvance(name) + 2 * self.PAD_X
        h = fm.height() + 2 * self.PAD_Y
        self._rect = QRectF(0, -h, w, h)
        self.update()

    def show_at_zoom(self, zoom: float) -> None:
        self.setVisible(self.region_px * zoom >= self.MIN_SCREEN_PX)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, option, widget=None):
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(0, 0, 0, 170), 1))
        painter.setBrush(QBrush(self.colour))
        painter.drawRoundedRect(self._rect.adjusted(0.5, 0.5, -0.5, -0.5), 2, 2)
        light = 0.299 * self.colour.red() + 0.587 * self.colour.green() + 0.114 * self.colour.blue() > 140
        painter.setPen(QColor(0, 0, 0) if light else QColor(255, 255, 255))
        painter.setFont(self.font)
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self.name)


class ArrayImageItem(QGraphicsItem):
    """Draws a (H, W) uint32 ARGB32-premultiplied numpy array; only exposed parts are painted."""

    def __init__(self, z: float, fmt=QImage.Format.Format_ARGB32_Premultiplied):
        super().__init__()
        self.setZValue(z)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self._fmt = fmt
        self.array: np.ndarray | None = None
        self.qimage: QImage | None = None
        self._rect = QRectF()
        self.smooth_when_small = False
        self.smooth_always = False  # a stretched preview looks better smoothed at any zoom

    def set_array(self, array: np.ndarray | None) -> None:
        """Show an array (H, W) uint32 or (H, W, 4) BGRA uint8; None shows nothing."""
        self.prepareGeometryChange()
        if array is None:
            self.array = self.qimage = None
            self._rect = QRectF()
        else:
            if array.ndim == 3:
                array = array.view(np.uint32).reshape(array.shape[:2])
            self.array = np.ascontiguousarray(array)
            h, w = self.array.shape
            self.qimage = QImage(self.array.data, w, h, 4 * w, self._fmt)
            self._rect = QRectF(0, 0, w, h)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if self.qimage is None:
            return
        r = option.exposedRect.intersected(self._rect).toAlignedRect()
        if r.isEmpty():
            return
        if self.smooth_always:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        elif self.smooth_when_small:
            scale = painter.worldTransform().m11()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
        painter.drawImage(QRectF(r), self.qimage, QRectF(r))


class GridItem(QGraphicsItem):
    """The block grid (8 or 16 pixels), drawn only where exposed and only when cells are big
    enough on screen to be useful."""

    def __init__(self):
        super().__init__()
        self.setZValue(Z_GRID)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self.grid = 0
        self._rect = QRectF()

    def configure(self, grid: int, hw: tuple[int, int] | None) -> None:
        self.prepareGeometryChange()
        self.grid = grid
        self._rect = QRectF(0, 0, hw[1], hw[0]) if hw else QRectF()
        self.setVisible(bool(grid and hw))
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, option, widget=None):
        g = self.grid
        scale = painter.worldTransform().m11()
        if not g or g * scale < 5:
            return
        r = option.exposedRect.intersected(self._rect)
        pen = QPen(QColor(255, 255, 255, 55), 0)
        painter.setPen(pen)
        x = math.floor(r.left() / g) * g
        while x <= r.right():
            painter.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            x += g
        y = math.floor(r.top() / g) * g
        while y <= r.bottom():
            painter.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
            y += g


class BrushCursorItem(QGraphicsItem):
    """The brush outline under the mouse, at the brush's real size in image pixels."""

    def __init__(self):
        super().__init__()
        self.setZValue(Z_CURSOR)
        self.size = 10.0
        self.erase = False
        self.setVisible(False)

    def set_size(self, size: float) -> None:
        self.prepareGeometryChange()
        self.size = size

    def boundingRect(self) -> QRectF:
        r = self.size / 2 + 2
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter, option, widget=None):
        r = self.size / 2
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(0, 0, 0, 200), 0))
        painter.drawEllipse(QPointF(0, 0), r + 0.5, r + 0.5)
        painter.setPen(QPen(QColor(255, 255, 255) if self.erase else QColor(255, 90, 90), 0, Qt.PenStyle.DashLine if self.erase else Qt.PenStyle.SolidLine))
        painter.drawEllipse(QPointF(0, 0), r, r)


class RotatedBoxItem(QGraphicsItem):
    """A rotated box: position = centre, rotation = angle (degrees clockwise, as RotatedBox).

    When selected it shows handles sized in screen pixels (``handle_scale`` is set by the view
    from its zoom), as many as the box's size on screen leaves room for: 8 resize handles and a
    rotation handle above the top edge when both sides are at least ``LARGE_PX`` on screen, 4
    smaller corner handles just outside the corners down to ``SMALL_PX``, none below (the box is
    still selected and moved by a drag inside it). A 13x9 px box at fit zoom is about 10x7 px on
    screen: 8 handles of 10 px covered it, and a drag from its centre resized it."""

    HANDLE_PX = 4.0  # half the side of a resize handle on a large box
    SMALL_HANDLE_PX = 3.0  # half the side of a corner handle on a small box
    ROTATE_PX = 28.0
    LARGE_PX = 40.0
    SMALL_PX = 8.0

    def __init__(self, local_id: int, box: RotatedBox):
        super().__init__()
        self.local_id = local_id
        self.setZValue(Z_BOXES)
        self.selected = False
        self.handle_scale = 1.0  # image pixels per screen pixel
        self.colour = QColor(BOX_COLOR)  # the box's class colour (CanvasView.set_class_colours)
        self.set_box(box)

    def set_box(self, box: RotatedBox) -> None:
        self.prepareGeometryChange()
        self.box = box
        self.setPos(box.cx, box.cy)
        self.setRotation(box.angle)
        self.update()

    def set_colour(self, colour: QColor) -> None:
        if colour != self.colour:
            self.colour = QColor(colour)
            self.update()

    def set_selected(self, selected: bool) -> None:
        self.prepareGeometryChange()
        self.selected = selected
        self.setZValue(Z_BOXES + (1 if selected else 0))
        self.update()

    def set_handle_scale(self, s: float) -> None:
        self.prepareGeometryChange()
        self.handle_scale = s

    def _local_rect(self) -> QRectF:
        return QRectF(-self.box.width / 2, -self.box.height / 2, self.box.width, self.box.height)

    def screen_size(self) -> tuple[float, float]:
        """The box's width and height in screen pixels at the current zoom."""
        return self.box.width / self.handle_scale, self.box.height / self.handle_scale

    def handle_half_px(self) -> float:
        """Half the side of the shown resize handles in screen pixels (0: none shown)."""
        sw, sh = self.screen_size()
        if min(sw, sh) >= self.LARGE_PX:
            return self.HANDLE_PX
        if min(sw, sh) >= self.SMALL_PX:
            return self.SMALL_HANDLE_PX
        return 0.0

    def handles(self) -> dict[str, QPointF]:
        """The handles shown when selected, in local coordinates: on a large box the corners
        nw/ne/se/sw, the edges n/e/s/w and rotate; on a small one the 4 corners, each moved out
        by its half side so that it never covers the box; on a tiny one none."""
        w, h = self.box.width / 2, self.box.height / 2
        half = self.handle_half_px()
        if half == self.HANDLE_PX:
            return {
                "nw": QPointF(-w, -h), "n": QPointF(0, -h), "ne": QPointF(w, -h), "e": QPointF(w, 0),
                "se": QPointF(w, h), "s": QPointF(0, h), "sw": QPointF(-w, h), "w": QPointF(-w, 0),
                "rotate": QPointF(0, -h - self.ROTATE_PX * self.handle_scale),
            }
        if half:
            o = half * self.handle_scale
            return {"nw": QPointF(-w - o, -h - o), "ne": QPointF(w + o, -h - o), "se": QPointF(w + o, h + o), "sw": QPointF(-w - o, h + o)}
        return {}

    def handle_at(self, scene_pos: QPointF) -> str | None:
        """The handle under ``scene_pos`` (its drawn square plus 2 screen px), or None."""
        if not self.selected:
            return None
        p = self.mapFromScene(scene_pos)
        tol = (self.handle_half_px() + 2) * self.handle_scale
        best, dist = None, None
        for name, q in self.handles().items():
            dx, dy = abs(p.x() - q.x()), abs(p.y() - q.y())
            if dx <= tol and dy <= tol and (dist is None or dx + dy < dist):
                best, dist = name, dx + dy
        return best

    def contains_scene(self, scene_pos: QPointF) -> bool:
        p = self.mapFromScene(scene_pos)
        tol = 3 * self.handle_scale
        return self._local_rect().adjusted(-tol, -tol, tol, tol).contains(p)

    def boundingRect(self) -> QRectF:
        m = (self.HANDLE_PX * 2 + 3) * self.handle_scale + 2
        r = self._local_rect().adjusted(-m, -m, m, m)
        if self.selected:
            r = r.united(QRectF(-m, -self.box.height / 2 - self.ROTATE_PX * self.handle_scale - m, 2 * m, 2 * m))
        return r

    def paint(self, painter, option, widget=None):
        color = BOX_SELECTED_COLOR if self.selected else self.colour
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fill = QColor(color)
        fill.setAlpha(35)
        painter.setBrush(QBrush(fill))
        painter.setPen(QPen(QColor(0, 0, 0, 160), 3.5 * self.handle_scale))
        painter.drawRect(self._local_rect())
        painter.setPen(QPen(color, 2 * self.handle_scale))
        painter.drawRect(self._local_rect())
        # a tick on the top edge shows which way the box's x axis (width) points
        tick = min(6 * self.handle_scale, self.box.height / 2)
        painter.drawLine(QPointF(0, -self.box.height / 2), QPointF(0, -self.box.height / 2 + tick))
        if not self.selected:
            return
        hs = self.handles()
        s = self.handle_half_px() * self.handle_scale
        painter.setPen(QPen(color, 1.5 * self.handle_scale))
        if "rotate" in hs:
            painter.drawLine(hs["n"], hs["rotate"])
        painter.setBrush(QBrush(QColor(20, 20, 20)))
        for name, q in hs.items():
            if name == "rotate":
                painter.setBrush(QBrush(color))
                painter.drawEllipse(q, s * 1.3, s * 1.3)
            else:
                painter.drawRect(QRectF(q.x() - s, q.y() - s, 2 * s, 2 * s))

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRect(self.boundingRect())
        return path


class ProposalLayer(QGraphicsItem):
    """Suggested rotated boxes of the model, over the heatmap, until they are accepted or rejected.

    The layer draws nothing itself; each suggestion is a child polygon with a cosmetic dashed pen,
    so the outline stays 2 screen pixels wide at any zoom, and a number (the row of the Box
    proposals list) that keeps its screen size. The selected suggestion is drawn solid."""

    def __init__(self):
        super().__init__()
        self.setZValue(Z_PROPOSALS)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        self.boxes: list[RotatedBox] = []
        self.polygons: list[QGraphicsPolygonItem] = []
        self.numbers: list[QGraphicsSimpleTextItem] = []
        self._pen = QPen(PROPOSAL_COLOR, 2)
        self._pen.setCosmetic(True)
        self._pen.setStyle(Qt.PenStyle.DashLine)
        self._selected_pen = QPen(PROPOSAL_COLOR, 3)
        self._selected_pen.setCosmetic(True)

    def set_boxes(self, boxes: list[RotatedBox]) -> None:
        """Show these suggestions, numbered from 1 (an empty list clears the layer)."""
        for item in self.childItems():
            item.setParentItem(None)
            if item.scene() is not None:
                item.scene().removeItem(item)
        self.boxes = list(boxes)
        self.polygons, self.numbers = [], []
        font = QFont()
        font.setBold(True)
        font.setPointSize(11)
        for i, b in enumerate(self.boxes):
            corners = b.corners()
            item = QGraphicsPolygonItem(QPolygonF([QPointF(float(x), float(y)) for x, y in corners]), self)
            item.setPen(self._pen)
            self.polygons.append(item)
            num = QGraphicsSimpleTextItem(str(i + 1), self)
            num.setFont(font)
            num.setBrush(QBrush(PROPOSAL_COLOR))
            num.setPen(QPen(QColor(0, 0, 0), 0.6))
            num.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)  # same size at any zoom
            top = corners[np.argmin(corners[:, 1] + 1e-3 * corners[:, 0])]  # the top corner, a little above it
            num.setPos(float(top[0]) + 2, float(top[1]) - 2)
            self.numbers.append(num)

    def select(self, index: int | None) -> None:
        """Draw suggestion ``index`` solid (the list's current row), the others dashed."""
        for i, item in enumerate(self.polygons):
            item.setPen(self._selected_pen if i == index else self._pen)

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(self, painter, option, widget=None):
        pass
