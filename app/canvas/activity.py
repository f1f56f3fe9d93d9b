"""Which input is labeling activity for the time tracker (app/timing.py).

Activity is input on the canvas only: mouse presses, moves with a button held, releases, the
wheel, and keys while the canvas has focus, except the navigation keys (moving to another image
is not labeling). Mouse or key input anywhere else in the window (image list, panels, toolbar)
pauses the count until the next canvas input; dialogs take the window's focus, which the tracker
handles as a pause too.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QWidget

PRESSES = {QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick}
KEYS = {QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride}  # a shortcut key reaches its widget as ShortcutOverride only
INPUT = PRESSES | KEYS | {QEvent.Type.MouseMove, QEvent.Type.MouseButtonRelease, QEvent.Type.Wheel}


class LabelingActivity(QObject):
    """Application event filter: canvas input goes to ``note_input(press)``, other input in
    ``window`` to ``note_elsewhere()``."""

    def __init__(self, window: QWidget, canvas: QWidget, note_input: Callable[[bool], None],
                 note_elsewhere: Callable[[], None], ignored_keys: Iterable[QKeySequence] = ()):
        super().__init__(window)
        self.main_window = window
        self.canvas = canvas
        self.note_input = note_input
        self.note_elsewhere = note_elsewhere
        self.ignored_keys = [QKeySequence(k) for k in ignored_keys]

    def eventFilter(self, obj, event) -> bool:
        t = event.type()
        if t not in INPUT or not isinstance(obj, QWidget):
            return False
        if obj is self.canvas or self.canvas.isAncestorOf(obj):
            self._on_canvas(t, event)
        elif obj.window() is self.main_window and not obj.isAncestorOf(self.canvas):
            self.note_elsewhere()  # (the canvas's ancestors only see what the canvas passed on)
        return False

    def _on_canvas(self, t, event) -> None:
        if t in PRESSES:
            self.note_input(True)
        elif t == QEvent.Type.MouseMove:
            if event.buttons() != Qt.MouseButton.NoButton:
                self.note_input(False)
        elif t in KEYS:
            if QKeySequence(event.keyCombination()) not in self.ignored_keys:
                self.note_input(False)
        else:
            self.note_input(False)
