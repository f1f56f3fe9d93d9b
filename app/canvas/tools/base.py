"""The tool interface: the canvas hands each tool image-space mouse input."""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt


class Tool:
    """A labeling tool (its edits, as undo commands, carry their label type for the timing)."""

    name = "tool"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas):
        self.canvas = canvas

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        self.cancel()

    def press(self, pos: QPointF, event) -> None:
        pass

    def move(self, pos: QPointF, event) -> None:
        pass

    def release(self, pos: QPointF, event) -> None:
        pass

    def cancel(self) -> None:
        """Abandon an interaction in progress (Escape, tool or image switch)."""

    def status(self) -> str:
        return self.name
