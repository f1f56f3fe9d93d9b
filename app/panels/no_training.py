"""Stand-in for the Train dock where PyTorch is not installed (the desktop package ships without
it): the studio still opens, labels and exports; the panel says how to get training."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class NoTrainingPanel(QWidget):
    """Same slots and signals as :class:`semirest.app.panels.train_dock.TrainDock`; each slot is a
    no-op or a message. Nothing is trained here, so no scores and no box suggestions are sent."""

    message = Signal(str)  # for the status bar
    scores_changed = Signal(object)
    box_review_started = Signal()

    def __init__(self, reason: str, parent=None):
        super().__init__(parent)
        self.reason = reason
        self.label = QLabel(
            "Training is not available here: PyTorch is not installed.\n\n"
            "Labeling, study mode and exports work as usual. To train, install the Python package "
            "(pip install -e . in a checkout, see the README) and start semirest-studio from it.\n\n"
            f"({reason})")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addStretch(1)

    def start(self) -> None:
        self.message.emit("Training needs PyTorch, which is not installed")

    retrain = cancel = clear_cache = toggle_heatmap = propose = export_detector = start

    def image_changed(self) -> None:
        pass

    def score_threshold(self) -> None:
        return None  # no runs, no scores

    def shutdown(self) -> None:
        pass
