"""The tool interface: the canvas hands each tool image-space mouse input."""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt

from semirest.core.labels.image_labels import PIXEL


class Tool:
    """A labeling tool. ``label_type`` decides which timer its time goes to."""

    name = "tool"
    label_type = PIXEL
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
