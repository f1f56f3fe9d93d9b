"""Which input is labeling activity for the time tracker (app/timing.py).

Activity is input on the canvas only: mouse presses, moves with a button held, releases, the
wheel, and keys while the canvas has focus. What navigates is told by what it does, not by its
key: a command that moves to another image closes the span (the tracker's ``set_image``), and one
that takes the keyboard away from the canvas (Ctrl+G, Ctrl+F, a click in the image list) pauses
the count at that moment, so the time spent typing in the go-to or filter box never counts. Mouse
or key input anywhere else in the window (image list, panels, toolbar) pauses the count until the
next canvas input; dialogs take the window's focus, which the tracker handles as a pause too.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QApplication, QWidget

PRESSES = {QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick}
KEYS = {QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride}  # a shortcut key reaches its widget as ShortcutOverride only
INPUT = PRESSES | KEYS | {QEvent.Type.MouseMove, QEvent.Type.MouseButtonRelease, QEvent.Type.Wheel}


class LabelingActivity(QObject):
    """Application event filter: canvas input goes to ``note_input(press)``, other input in
    ``window`` and the keyboard leaving the canvas to ``note_elsewhere()``."""

    def __init__(self, window: QWidget, canvas: QWidget, note_input: Callable[[bool], None],
                 note_elsewhere: Callable[[], None]):
        super().__init__(window)
        self.main_window = window
        self.canvas = canvas
        self.note_input = note_input
        self.note_elsewhere = note_elsewhere

    def eventFilter(self, obj, event) -> bool:
        t = event.type()
        if t == QEvent.Type.FocusOut:
            if isinstance(obj, QWidget) and self._on_canvas_widget(obj) and not self._on_canvas_widget(QApplication.focusWidget()):
                self.note_elsewhere()  # (the new focus widget is already set when the old one hears)
            return False
        if t not in INPUT or not isinstance(obj, QWidget):
            return False
        if self._on_canvas_widget(obj):
            self._on_canvas(t, event)
        elif obj.window() is self.main_window and not obj.isAncestorOf(self.canvas):
            self.note_elsewhere()  # (the canvas's ancestors only see what the canvas passed on)
        return False

    def _on_canvas_widget(self, w: QWidget | None) -> bool:
        return w is not None and (w is self.canvas or self.canvas.isAncestorOf(w))

    def _on_canvas(self, t, event) -> None:
        if t in PRESSES:
            self.note_input(True)
        elif t == QEvent.Type.MouseMove:
            if event.buttons() != Qt.MouseButton.NoButton:
                self.note_input(False)
        else:
            self.note_input(False)
