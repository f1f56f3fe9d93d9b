"""B brush and E eraser: paint the pixel mask at image resolution; a stroke is one undo step."""
from __future__ import annotations

from PySide6.QtCore import Qt

from semirest.app.canvas.tools.base import Tool
from semirest.app.undo import PixelStrokeCommand


class BrushTool(Tool):
    cursor = Qt.CursorShape.BlankCursor  # the brush outline is the cursor

    def __init__(self, canvas, erase: bool = False):
        super().__init__(canvas)
        self.erase = erase
        self.name = "Eraser" if erase else "Brush"
        self._last = None

    def activate(self) -> None:
        c = self.canvas
        c.brush_cursor.erase = self.erase
        c.brush_cursor.set_size(c.brush_size)
        c.brush_cursor.update()

    def deactivate(self) -> None:
        self.release(None, None)
        self.canvas.brush_cursor.setVisible(False)

    def press(self, pos, event) -> None:
        if not self.canvas.can_edit():
            return
        doc = self.canvas.document
        doc.begin_stroke()
        self._last = (pos.x(), pos.y())
        doc.paint_segment(self._last, self._last, self.canvas.brush_size, 0 if self.erase else 1)

    def move(self, pos, event) -> None:
        cur = self.canvas.brush_cursor
        cur.setVisible(self.canvas.document is not None)
        cur.setPos(pos)
        if self._last is not None:
            p = (pos.x(), pos.y())
            self.canvas.document.paint_segment(self._last, p, self.canvas.brush_size, 0 if self.erase else 1)
            self._last = p

    def release(self, pos, event) -> None:
        if self._last is None:
            return
        self._last = None
        result = self.canvas.document.end_stroke()
        if result is not None:
            self.canvas.command_done.emit(PixelStrokeCommand(*result, erase=self.erase))

    def cancel(self) -> None:
        self.release(None, None)  # a stroke in progress is kept, not thrown away

    def status(self) -> str:
        return f"{self.name} {self.canvas.brush_size} px"
