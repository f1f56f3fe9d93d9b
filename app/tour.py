"""The guided tour shown by ``semirest-studio --demo``: a few dismissable cards over the canvas.

Plain widgets on top of the main window (no modal dialog): the inspector can try each tool while
the card is shown. Next / Back step through the cards, Close or Escape dismisses the tour.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

# (title, text, action to select when the card is shown or None)
TOUR_STEPS: tuple[tuple[str, str, str | None], ...] = (
    (
        "Welcome to SemiREST Studio",
        "This demo project holds a small synthetic dataset of brushed-metal parts with scratches, "
        "stains, cracks and holes. Every edit is saved the moment you make it.",
        None,
    ),
    (
        "Pixels: brush B, eraser E",
        "Hold the left button and paint over the defect. <b>[</b> and <b>]</b> change the brush "
        "size; the mouse wheel zooms; the middle button (or Space + left drag) pans.",
        "brush",
    ),
    (
        "Blocks: K (8×8) and L (16×16)",
        "Click or drag over cells to toggle them. The first cell decides whether a drag turns "
        "cells on or off. Blocks are the cheapest label the method learns from.",
        "block8",
    ),
    (
        "Rotated boxes: R",
        "Drag to draw a box; drag its handles to resize or rotate it. <b>Z</b>/<b>X</b> rotate "
        "by 1°, Shift by 15°, <b>Delete</b> removes it.",
        "box",
    ),
    (
        "Move through the images: A and D",
        "<b>A</b> is the previous image, <b>D</b> the next one. The list on the left shows what "
        "is labelled and how long it took. <b>Ctrl+Z</b> undoes, per image.",
        None,
    ),
    (
        "Study mode: F2",
        "<b>F2</b> shows the reference (ground-truth) mask beside the image so you can practise; "
        "<b>G</b> overlays it on the canvas. Close this tour with Escape.",
        None,
    ),
)


class GuidedTour(QFrame):
    """A card anchored to the top of ``window``'s central widget."""

    def __init__(self, window, steps=TOUR_STEPS):
        super().__init__(window)
        self.window_ = window
        self.steps = steps
        self.index = 0
        self.dismissed = False
        self.setObjectName("guided_tour")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(
            "#guided_tour { background: rgba(24, 32, 44, 235); border: 2px solid #4aa3ff; border-radius: 10px; }"
            "#guided_tour QLabel { color: #f0f4f8; background: transparent; }"
            "#guided_tour QPushButton { padding: 4px 14px; }"
        )
        self.title = QLabel()
        f = self.title.font()
        f.setPointSize(f.pointSize() + 3)
        f.setBold(True)
        self.title.setFont(f)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.counter = QLabel()
        self.back = QPushButton("Back")
        self.next = QPushButton("Next")
        self.close_button = QPushButton("Close tour")
        self.back.clicked.connect(lambda: self.show_step(self.index - 1))
        self.next.clicked.connect(lambda: self.show_step(self.index + 1))
        self.close_button.clicked.connect(self.dismiss)
        buttons = QHBoxLayout()
        buttons.addWidget(self.counter)
        buttons.addStretch(1)
        for b in (self.back, self.next, self.close_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the tool shortcuts keep working
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(18, 14, 18, 12)
        lay.addWidget(self.title)
        lay.addWidget(self.text)
        lay.addLayout(buttons)
        self.setFixedWidth(520)
        self._resize = _ResizeFilter(self)
        window.installEventFilter(self._resize)
        self._escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), window)
        self._escape.setContext(Qt.ShortcutContext.WindowShortcut)
        self._escape.activated.connect(self.dismiss)
        self.show_step(0)

    def show_step(self, i: int) -> None:
        if not (0 <= i < len(self.steps)):
            if i >= len(self.steps):
                self.dismiss()
            return
        self.index = i
        title, text, action = self.steps[i]
        self.title.setText(title)
        self.text.setText(text)
        self.counter.setText(f"{i + 1} / {len(self.steps)}")
        self.back.setEnabled(i > 0)
        self.next.setText("Done" if i == len(self.steps) - 1 else "Next")
        if action is not None and action in getattr(self.window_, "actions_", {}):
            self.window_.actions_[action].trigger()
        self.adjustSize()
        self.place()
        self.show()  # a child made after its window was shown starts hidden
        self.raise_()

    def place(self) -> None:
        c = self.window_.centralWidget()
        top_left = c.mapTo(self.window_, c.rect().topLeft())
        self.move(top_left.x() + max(8, (c.width() - self.width()) // 2), top_left.y() + 16)

    def dismiss(self) -> None:
        if self.dismissed:
            return
        self.dismissed = True
        self.window_.removeEventFilter(self._resize)
        self._escape.setEnabled(False)
        self._escape.deleteLater()
        self.hide()
        self.deleteLater()


class _ResizeFilter(QObject):
    def __init__(self, tour: GuidedTour):
        super().__init__(tour)
        self.tour = tour

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.tour.place()
        return False
