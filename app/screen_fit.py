"""Windows that fit small screens: a window opens inside the screen's available area, and a dock
panel taller than its dock scrolls instead of squeezing its widgets over each other."""
from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QStyle, QWidget


def fit_to_screen(window: QWidget, preferred: QSize) -> None:
    """Size ``window`` to ``preferred`` or the screen's available area, whichever is smaller, frame
    included (known once the window is shown; call again then), and centre it there. A fixed
    1760x900 window was cut off on a 1600x900 screen."""
    screen = window.screen()
    if screen is None:
        window.resize(preferred)
        return
    avail = screen.availableGeometry()
    frame = window.frameGeometry().size() - window.geometry().size()
    size = QSize(min(preferred.width(), avail.width() - frame.width()), min(preferred.height(), avail.height() - frame.height()))
    window.resize(size)
    outer = QRect(0, 0, size.width() + frame.width(), size.height() + frame.height())
    outer.moveCenter(avail.center())
    window.move(outer.topLeft())


def scrollable(panel: QWidget) -> QScrollArea:
    """``panel`` in a frameless scroll area: where the dock is shorter than the panel's minimum
    height, it scrolls (at 1024x600 the Train dock's labels were drawn over the loss curve and
    the proposal buttons were cut off)."""
    area = QScrollArea()
    area.setObjectName(f"{panel.objectName() or type(panel).__name__}_scroll")
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    # scroll up and down only: the dock is at least as wide as the panel and its scroll bar
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    bar = area.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
    area.setMinimumWidth(panel.minimumSizeHint().width() + bar + 2)
    return area
