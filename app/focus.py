"""Enter and Esc in a panel's text or number field give the keyboard back to the canvas, so the
single-key shortcuts (A / D, tools) work again without a click on the image.

Per widget (its own signals and a widget-local shortcut), never an application-wide event filter:
each key press of the whole studio would otherwise pass through Python."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QLineEdit, QWidget


class _HandBack:
    """Moves the focus from ``field`` to ``target`` (a plain object: its slots return nothing)."""

    def __init__(self, field: QWidget, target: QWidget):
        self.field, self.target = field, target

    def now(self) -> None:
        self.target.setFocus(Qt.FocusReason.OtherFocusReason)

    def if_focused(self) -> None:
        """editingFinished also comes when the field loses the focus: only Enter hands it back."""
        if self.field.hasFocus():
            self.now()


def hand_back_keys(field: QWidget, target: QWidget) -> None:
    """Enter (line edits and spin boxes) and Esc in ``field`` focus ``target``."""
    hb = _HandBack(field, target)
    field.setProperty("hands_back_keys", True)
    field._hand_back = hb  # lives as long as the field
    if isinstance(field, QAbstractSpinBox):
        field.editingFinished.connect(hb.if_focused)
    elif isinstance(field, QLineEdit):
        field.returnPressed.connect(hb.now)
    esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), field)
    esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    esc.activated.connect(hb.now)


def hand_back_keys_in(panel: QWidget, target: QWidget) -> None:
    """:func:`hand_back_keys` for every line edit and spin box inside ``panel`` (the line edit
    inside a spin box or combo box is its owner's)."""
    fields = panel.findChildren(QAbstractSpinBox) + [
        e for e in panel.findChildren(QLineEdit) if not isinstance(e.parent(), (QAbstractSpinBox, QComboBox))]
    for f in fields:
        if not f.property("hands_back_keys"):
            hand_back_keys(f, target)
