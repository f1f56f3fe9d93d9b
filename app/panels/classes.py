"""Edit ▸ Classes…: the project's defect classes, added, renamed and coloured through the store.

The list's order is the order of keys 1-9. A refused name (empty, with a space, taken) is shown in
the dialog with the store's reason; nothing is written then."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QColorDialog,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from semirest.core.project.store import ProjectError, ProjectStore


def colour_icon(colour: str, size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(colour))
    return QIcon(pm)


class ClassesDialog(QDialog):
    """A list of the classes, a name field, and Add, Rename and Colour… buttons."""

    classes_changed = Signal()

    def __init__(self, store: ProjectStore, parent=None):
        super().__init__(parent)
        self.store = store
        self.setWindowTitle("Classes")
        self.list = QListWidget()
        self.list.setObjectName("class_list")
        self.name = QLineEdit()
        self.name.setObjectName("class_name")
        self.name.setPlaceholderText("class name, e.g. scratch")
        self.add_button = QPushButton("Add")
        self.rename_button = QPushButton("Rename")
        self.colour_button = QPushButton("Colour…")
        self.close_button = QPushButton("Close")
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #c33;")
        self.problem.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.add_button, self.rename_button, self.colour_button, self.close_button):
            b.setAutoDefault(False)
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Keys 1–9 pick the class of the next label, in this order."))
        lay.addWidget(self.list)
        lay.addWidget(self.name)
        lay.addLayout(buttons)
        lay.addWidget(self.problem)
        self.add_button.clicked.connect(self.add)
        self.rename_button.clicked.connect(self.rename)
        self.colour_button.clicked.connect(self.choose_colour)
        self.close_button.clicked.connect(self.accept)
        self.list.currentRowChanged.connect(self._selected)
        self.refresh()

    def refresh(self) -> None:
        row = self.list.currentRow()
        self.list.clear()
        for n, k in enumerate(self.store.classes()):
            item = QListWidgetItem(colour_icon(k.colour), f"{n + 1 if n < 9 else ' '}  {k.name}")
            item.setData(Qt.ItemDataRole.UserRole, k.id)
            self.list.addItem(item)
        self.list.setCurrentRow(min(max(row, 0), self.list.count() - 1))

    def selected_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def _selected(self, _row: int) -> None:
        k = self.selected_id()
        if k is not None:
            self.name.setText(self.store.label_class(k).name)

    def _write(self, change) -> bool:
        try:
            change()
        except ProjectError as exc:
            self.problem.setText(str(exc))
            return False
        self.problem.setText("")
        self.refresh()
        self.classes_changed.emit()
        return True

    def add(self) -> None:
        name = self.name.text()
        if self._write(lambda: self.store.add_class(name)):
            self.list.setCurrentRow(self.list.count() - 1)

    def rename(self) -> None:
        k, name = self.selected_id(), self.name.text()
        if k is not None:
            self._write(lambda: self.store.rename_class(k, name))

    def set_colour(self, colour: str) -> None:
        k = self.selected_id()
        if k is not None:
            self._write(lambda: self.store.set_class_colour(k, colour))

    def choose_colour(self) -> None:
        k = self.selected_id()
        if k is None:
            return
        c = QColorDialog.getColor(QColor(self.store.label_class(k).colour), self, "Class colour")
        if c.isValid():
            self.set_colour(c.name())
