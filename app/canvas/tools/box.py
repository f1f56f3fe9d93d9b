"""R rotated box: drag on empty image to draw; drag inside a box to move it, its square handles
to resize it (the opposite side stays put) and its round handle to rotate it (Shift: 15 degree
steps); Z/X rotate by -1/+1 degree, Shift+Z/Shift+X by -15/+15; Delete removes it. The cursor
says what a press would do: a size cursor along the hovered handle's direction on screen, a
rotate cursor, a move cursor inside a box, the cross where a drag draws a new box.

Boxes are :class:`RotatedBox` (centre, width, height, angle in degrees clockwise on screen)."""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QPainter, QPen, QPixmap, QPolygonF

from semirest.app.canvas.layers import RotatedBoxItem
from semirest.app.canvas.tools.base import Tool
from semirest.app.undo import BoxAddCommand, BoxDeleteCommand, BoxEditCommand
from semirest.core.labels.boxes import RotatedBox

MIN_SIZE = 2.0

# handle -> (x sign, y sign) of the dragged side in box coordinates; 0 = that axis is not resized
HANDLE_SIDES = {"nw": (-1, -1), "n": (0, -1), "ne": (1, -1), "e": (1, 0), "se": (1, 1), "s": (0, 1), "sw": (-1, 1), "w": (-1, 0)}


def resize_box(box: RotatedBox, handle: str, p: tuple[float, float]) -> RotatedBox:
    """Move one side or corner of a box to ``p`` (image coordinates); the opposite stays fixed."""
    sx, sy = HANDLE_SIDES[handle]
    t = math.radians(box.angle)
    ux, uy = (math.cos(t), math.sin(t)), (-math.sin(t), math.cos(t))
    dx, dy = p[0] - box.cx, p[1] - box.cy
    lx, ly = dx * ux[0] + dy * ux[1], dx * uy[0] + dy * uy[1]  # p in box coordinates
    hw, hh = box.width / 2, box.height / 2
    x0, x1, y0, y1 = -hw, hw, -hh, hh
    if sx < 0:
        x0 = min(lx, x1 - MIN_SIZE)
    elif sx > 0:
        x1 = max(lx, x0 + MIN_SIZE)
    if sy < 0:
        y0 = min(ly, y1 - MIN_SIZE)
    elif sy > 0:
        y1 = max(ly, y0 + MIN_SIZE)
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    return RotatedBox(box.cx + mx * ux[0] + my * uy[0], box.cy + mx * ux[1] + my * uy[1], x1 - x0, y1 - y0, box.angle)


def rotate_box_towards(box: RotatedBox, p: tuple[float, float], snap: float = 0.0) -> RotatedBox:
    """The box turned so that its rotation handle (above the top edge) points at ``p``."""
    a = math.degrees(math.atan2(p[1] - box.cy, p[0] - box.cx)) + 90.0
    if snap:
        a = round(a / snap) * snap
    return RotatedBox(box.cx, box.cy, box.width, box.height, a)


# size cursors by the handle's direction from the box centre on screen, in 45 degree sectors
# starting at 0 degrees (to the right; screen y points down)
SIZE_CURSORS = (Qt.CursorShape.SizeHorCursor, Qt.CursorShape.SizeFDiagCursor, Qt.CursorShape.SizeVerCursor, Qt.CursorShape.SizeBDiagCursor)
MOVE_CURSOR = Qt.CursorShape.SizeAllCursor
_rotate_cursor: QCursor | None = None


def size_cursor(dx: float, dy: float) -> Qt.CursorShape:
    """The resize cursor for a handle that lies (dx, dy) screen pixels from the box centre."""
    a = math.degrees(math.atan2(dy, dx)) % 180.0
    return SIZE_CURSORS[int(((a + 22.5) % 180.0) // 45.0)]


def rotate_cursor() -> QCursor:
    """A circular arrow (Qt has no rotate cursor), drawn once."""
    global _rotate_cursor
    if _rotate_cursor is None:
        pm = QPixmap(24, 24)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for color, width in ((QColor(0, 0, 0), 4.0), (QColor(255, 255, 255), 2.0)):
            p.setPen(QPen(color, width))
            p.drawArc(QRectF(4, 4, 16, 16), 90 * 16, 270 * 16)  # from 12 o'clock, counter-clockwise to 3
            p.setBrush(color)
            p.drawPolygon(QPolygonF([QPointF(12, 0.5), QPointF(18, 4), QPointF(12, 7.5)]))
        p.end()
        _rotate_cursor = QCursor(pm, 12, 12)
    return _rotate_cursor


class BoxTool(Tool):
    name = "Rotated box"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas):
        super().__init__(canvas)
        self._mode = None  # "create", "move", "rotate" or a resize handle name
        self._start = None
        self._before: RotatedBox | None = None
        self._preview: RotatedBoxItem | None = None

    def deactivate(self) -> None:
        self.cancel()

    def cancel(self) -> None:
        if self._mode not in (None, "create") and self._before is not None:
            local = self.canvas.selected_box
            if local in self.canvas.box_items:
                self.canvas.box_items[local].set_box(self._before)
        self._drop_preview()
        self._mode = None

    def _drop_preview(self) -> None:
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
            self._preview = None

    def _box_at(self, pos: QPointF) -> int | None:
        items = sorted(self.canvas.box_items.values(), key=lambda it: (it.selected, it.local_id), reverse=True)
        for it in items:
            if it.contains_scene(pos):
                return it.local_id
        return None

    def press(self, pos, event) -> None:
        c = self.canvas
        if not c.can_edit():
            return
        sel = c.box_items.get(c.selected_box)
        handle = sel.handle_at(pos) if sel is not None else None
        if handle is not None:
            self._mode, self._before, self._start = handle, sel.box, (pos.x(), pos.y())
            return
        hit = self._box_at(pos)
        if hit is not None:
            c.select_box(hit)
            self._mode, self._before, self._start = "move", c.box_items[hit].box, (pos.x(), pos.y())
            return
        c.select_box(None)
        h, w = c.document.hw
        x, y = min(max(pos.x(), 0), w), min(max(pos.y(), 0), h)
        self._mode, self._start = "create", (x, y)
        self._preview = RotatedBoxItem(-1, RotatedBox(x, y, 0, 0, 0))
        self._preview.set_handle_scale(1.0 / c.zoom)
        c.scene().addItem(self._preview)

    def _dragged_box(self, pos, event) -> RotatedBox | None:
        p = (pos.x(), pos.y())
        if self._mode == "create":
            h, w = self.canvas.document.hw
            x, y = min(max(p[0], 0), w), min(max(p[1], 0), h)
            x0, y0 = self._start
            return RotatedBox((x0 + x) / 2, (y0 + y) / 2, abs(x - x0), abs(y - y0), 0.0)
        b = self._before
        if self._mode == "move":
            return RotatedBox(b.cx + p[0] - self._start[0], b.cy + p[1] - self._start[1], b.width, b.height, b.angle)
        if self._mode == "rotate":
            shift = event is not None and bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            return rotate_box_towards(b, p, snap=15.0 if shift else 0.0)
        return resize_box(b, self._mode, p)

    def hover_cursor(self, pos: QPointF):
        """What a press at ``pos`` would do, as a cursor."""
        c = self.canvas
        sel = c.box_items.get(c.selected_box)
        handle = sel.handle_at(pos) if sel is not None else None
        if handle == "rotate":
            return rotate_cursor()
        if handle is not None:
            d = c.mapFromScene(sel.mapToScene(sel.handles()[handle])) - c.mapFromScene(sel.mapToScene(QPointF(0, 0)))
            return size_cursor(d.x(), d.y())
        if self._box_at(pos) is not None:
            return MOVE_CURSOR
        return self.cursor

    def move(self, pos, event) -> None:
        if self._mode is None:
            if self.canvas.document is not None and not (event.buttons() & Qt.MouseButton.LeftButton):
                self.canvas.viewport().setCursor(self.hover_cursor(pos))
            return
        if not (event.buttons() & Qt.MouseButton.LeftButton):
            return
        box = self._dragged_box(pos, event)
        if self._mode == "create":
            self._preview.set_box(box)
        else:
            self.canvas.box_items[self.canvas.selected_box].set_box(box)

    def release(self, pos, event) -> None:
        if self._mode is None:
            return
        c, doc = self.canvas, self.canvas.document
        box = self._dragged_box(pos, event)
        mode, self._mode = self._mode, None
        if mode == "create":
            self._drop_preview()
            if box.width >= MIN_SIZE and box.height >= MIN_SIZE:
                local = doc.add_box(box)
                c.command_done.emit(BoxAddCommand(local, box))
                c.select_box(local)
            return
        local = c.selected_box
        if box != self._before:
            doc.update_box(local, box)
            c.command_done.emit(BoxEditCommand(local, self._before, box, "move box" if mode == "move" else f"{mode} box"))

    # -- keyboard actions -----------------------------------------------------------------------
    def rotate_selected(self, degrees: float) -> bool:
        c = self.canvas
        local = c.selected_box
        if local is None or not c.can_edit():
            return False
        b = c.document.boxes[local]
        nb = RotatedBox(b.cx, b.cy, b.width, b.height, b.angle + degrees)
        c.document.update_box(local, nb)
        c.command_done.emit(BoxEditCommand(local, b, nb, f"rotate box {degrees:+g} deg"))
        return True

    def delete_selected(self) -> bool:
        c = self.canvas
        local = c.selected_box
        if local is None or not c.can_edit():
            return False
        box = c.document.boxes[local]
        c.select_box(None)
        c.document.remove_box(local)
        c.command_done.emit(BoxDeleteCommand(local, box))
        return True

    def status(self) -> str:
        b = self.canvas.document.boxes.get(self.canvas.selected_box) if self.canvas.document else None
        if b is None:
            return self.name
        return f"{self.name}: {b.width:.0f} x {b.height:.0f} px at {b.angle:+.0f} deg"
