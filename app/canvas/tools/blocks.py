"""K 8x8 and L 16x16 block toggles. The first cell of a click or drag decides whether the drag
turns cells on or off; every cell the drag passes gets that state; the drag is one undo step and
one transaction."""
from __future__ import annotations

import math

from PySide6.QtCore import Qt

from semirest.app.canvas.tools.base import Tool
from semirest.app.undo import BlockToggleCommand


class BlockTool(Tool):
    cursor = Qt.CursorShape.PointingHandCursor

    def __init__(self, canvas, grid: int):
        super().__init__(canvas)
        self.grid = grid
        self.name = f"Blocks {grid}x{grid}"
        self._value: bool | None = None
        self._changed: dict[tuple[int, int], int] = {}  # cell -> the class it got (on) or had (off)
        self._last = None

    def activate(self) -> None:
        self.canvas.show_grid(self.grid)

    def deactivate(self) -> None:
        self.release(None, None)
        self.canvas.show_grid(0)

    def _cell(self, x: float, y: float):
        h, w = self.canvas.document.hw
        if not (0 <= x < w and 0 <= y < h):
            return None
        return int(y) // self.grid, int(x) // self.grid

    def _visit(self, x: float, y: float) -> None:
        cell = self._cell(x, y)
        if cell is None:
            return
        doc = self.canvas.document
        if self._value is None:
            self._value = not bool(doc.cells[self.grid][cell])
        if bool(doc.cells[self.grid][cell]) != self._value:
            had = doc.cell_class(self.grid, cell)
            doc.set_cells(self.grid, [cell], self._value, commit=False)
            self._changed[cell] = doc.cell_class(self.grid, cell) if self._value else had

    def press(self, pos, event) -> None:
        if not self.canvas.can_edit():
            return
        self._value, self._changed = None, {}
        self._last = (pos.x(), pos.y())
        self._visit(*self._last)
        if self._value is None:  # pressed outside the image
            self._last = None

    def move(self, pos, event) -> None:
        if self._last is None:
            return
        x0, y0 = self._last
        x1, y1 = pos.x(), pos.y()
        n = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / (self.grid / 3)))
        for i in range(1, n + 1):  # no cell skipped on a fast drag
            self._visit(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n)
        self._last = (x1, y1)

    def release(self, pos, event) -> None:
        if self._last is None:
            return
        self._last = None
        if self._changed:
            self.canvas.document.commit_cells(self.grid, list(self._changed), self._value)
            on = self._changed if self._value else {}
            off = {} if self._value else self._changed
            self.canvas.command_done.emit(BlockToggleCommand(self.grid, on, off))
        self._changed = {}

    def cancel(self) -> None:
        self.release(None, None)  # a stroke in progress is kept, not thrown away

    def status(self) -> str:
        return self.name
