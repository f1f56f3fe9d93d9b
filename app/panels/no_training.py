"""Stand-in for the Train panel where PyTorch is not installed (the desktop package ships without
it): the studio still opens, labels and exports; the panel says how to get training."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class NoTrainingPanel(QWidget):
    """Same slots as :class:`semirest.app.panels.train.TrainPanel`, each a no-op or a message."""

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

    def _say(self) -> None:
        w = self.window()
        if hasattr(w, "statusBar"):
            w.statusBar().showMessage("Training needs PyTorch, which is not installed", 6000)

    def start(self) -> None:
        self._say()

    retrain = cancel = toggle_heatmap = propose = start

    def refresh_setting(self) -> None:
        pass

    def image_changed(self) -> None:
        pass

    def shutdown(self) -> None:
        pass
